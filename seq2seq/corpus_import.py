"""`seq2seq import`: your own English-Korean corpus as a new source of `data/raw/`.

Reads the usual forms of a parallel corpus, as OPUS and others give them:
- `tsv`: one pair a line, English, a tab, Korean;
- `moses`: two line-aligned files, one English and one Korean (`corpus.en`, `corpus.ko`);
- `tmx`: a TMX translation memory, each `<tu>` with an English and a Korean `<tuv>`.

Writes `data/raw/NAME.en` and `NAME.ko` (one sentence a line, as the prepare stage reads them)
and adds the source's row to `data/raw/SOURCES.md`. The input is read and checked whole before
anything is written; a mistake in it is one line naming the file and the line.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree

from seq2seq.errors import UserError
from seq2seq.files import atomic_path, write_text

FORMATS = ("tsv", "moses", "tmx")
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]*")
_TABLE_HEADER = ("| name | pairs | domain | origin (public repository, path) | licence |\n"
                 "|---|---:|---|---|---|\n")


def guess_format(files: list[Path]) -> str:
    """`moses` for two files, else by the file's extension (`.tmx`, or `.tsv`/`.txt`)."""
    if len(files) == 2:
        return "moses"
    if files[0].suffix.lower() == ".tmx":
        return "tmx"
    return "tsv"


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(number, text) of each line of a UTF-8 file, line ends stripped; a one-line error where the
    bytes are not UTF-8."""
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise UserError(f"{path}, line {number}: not UTF-8 text (convert it, e.g. with iconv)") from None
            yield number, text.removeprefix("\ufeff") if number == 1 else text


def _one_line(text: str) -> str:
    """`text` as one line of a raw file (a line break inside a sentence would shift every later
    pair). An empty side stays, as an empty line: the prepare stage drops such pairs and counts them."""
    return " ".join(text.split()) if "\n" in text or "\r" in text else text.strip()


def read_tsv(path: Path) -> list[tuple[str, str]]:
    """Pairs of a TSV file: English, a tab, Korean on each line; empty lines are skipped."""
    pairs = []
    for number, line in _lines(path):
        line = line.rstrip("\r\n")
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 2:
            raise UserError(f"{path}, line {number}: {len(fields)} tab-separated fields, expected 2 (English, Korean)")
        pairs.append((_one_line(fields[0]), _one_line(fields[1])))
    return pairs


def read_moses(english_path: Path, korean_path: Path) -> list[tuple[str, str]]:
    """Pairs of two line-aligned files (the English one first)."""
    english = [line.rstrip("\r\n") for _, line in _lines(english_path)]
    korean = [line.rstrip("\r\n") for _, line in _lines(korean_path)]
    if len(english) != len(korean):
        shorter = english_path if len(english) < len(korean) else korean_path
        raise UserError(f"{english_path} has {len(english):,} lines and {korean_path} {len(korean):,}: not aligned "
                        f"({shorter} ends first, at line {min(len(english), len(korean)) + 1})")
    return [(_one_line(en), _one_line(ko)) for en, ko in zip(english, korean, strict=True) if en.strip() or ko.strip()]


def _language(tuv: ElementTree.Element) -> str:
    """A `<tuv>`'s language, lower-case and without region: `en-US` -> `en`."""
    code = tuv.get("{http://www.w3.org/XML/1998/namespace}lang") or tuv.get("lang") or ""
    return code.lower().replace("_", "-").split("-")[0]


def read_tmx(path: Path) -> list[tuple[str, str]]:
    """Pairs of a TMX file: each `<tu>` with an `en` and a `ko` variant (regions such as en-US
    allowed); units without both are skipped, and a file with neither language is an error."""
    for _ in _lines(path):  # the encoding check, with a line number
        pass
    pairs, languages = [], set()
    try:
        for _, element in ElementTree.iterparse(path, events=("end",)):
            if element.tag != "tu":
                continue
            texts = {}
            for tuv in element.iter("tuv"):
                segment = tuv.find("seg")
                languages.add(_language(tuv))
                if segment is not None:
                    texts[_language(tuv)] = "".join(segment.itertext())
            if texts.get("en", "").strip() and texts.get("ko", "").strip():
                pairs.append((_one_line(texts["en"]), _one_line(texts["ko"])))
            element.clear()
    except ElementTree.ParseError as error:
        raise UserError(f"{path}: not well-formed TMX ({error})") from None
    missing = [name for code, name in (("en", "English"), ("ko", "Korean")) if code not in languages]
    if missing:
        found = ", ".join(sorted(languages - {""})) or "none"
        raise UserError(f"{path}: no {' and no '.join(missing)} variant in any <tu> (languages found: {found})")
    if not pairs:
        raise UserError(f"{path}: no <tu> holds both an English and a Korean segment")
    return pairs


def read_corpus(files: list[Path], form: str) -> list[tuple[str, str]]:
    """The (English, Korean) pairs of `files` in the form `form` (one of FORMATS)."""
    if form == "moses":
        if len(files) != 2:
            raise UserError("the moses form takes two files: the English one, then the Korean one")
        return read_moses(*files)
    if len(files) != 1:
        raise UserError(f"the {form} form takes one file, got {len(files)}")
    pairs = read_tsv(files[0]) if form == "tsv" else read_tmx(files[0])
    if not pairs:
        raise UserError(f"{files[0]}: no pairs found")
    return pairs


def add_source_row(sources_md: Path, name: str, pairs: int, domain: str, origin: str, licence: str) -> None:
    """Add the source's row to the data card's table (a new card when there is none) and update its total."""
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    row = f"| {cell(name)} | {pairs:,} | {cell(domain)} | {cell(origin)} | {cell(licence)} |\n"
    if not sources_md.exists():
        text = "# English-Korean raw corpus\n\n" + _TABLE_HEADER + row
    else:
        lines = sources_md.read_text(encoding="utf-8").splitlines(keepends=True)
        table = [i for i, line in enumerate(lines) if line.startswith("|")]
        at = table[-1] + 1 if table else len(lines)
        if not table:
            row = "\n" + _TABLE_HEADER + row
        lines.insert(at, row)
        text = "".join(lines)
        total = re.search(r"^Total: ([\d,]+) pairs\.", text, flags=re.MULTILINE)
        if total:
            new_total = int(total[1].replace(",", "")) + pairs
            text = text[: total.start(1)] + f"{new_total:,}" + text[total.end(1) :]
    write_text(sources_md, text)


def import_corpus(files: list[Path], name: str, licence: str, raw_dir: Path, form: str | None = None,
                  domain: str = "", origin: str = "") -> int:
    """Write `files` as source `name` of `raw_dir` (NAME.en, NAME.ko, a row in SOURCES.md); returns the pairs."""
    if not _NAME.fullmatch(name):
        raise UserError(f"source name {name!r}: use lower-case letters, digits, '.', '_' or '-' (e.g. my-corpus)")
    if not licence.strip():
        raise UserError("give the corpus's licence (--licence): the data card records it for everyone who uses it")
    form = form or guess_format(files)
    if form not in FORMATS:
        raise UserError(f"unknown form {form!r}: one of {', '.join(FORMATS)}")
    existing = [path for path in (raw_dir / f"{name}.en", raw_dir / f"{name}.ko") if path.exists()]
    if existing:
        raise UserError(f"{existing[0]} exists: source {name!r} is already in {raw_dir}; choose another name")
    pairs = read_corpus(files, form)
    with atomic_path(raw_dir / f"{name}.ko") as korean, atomic_path(raw_dir / f"{name}.en") as english:
        english.write_text("".join(en + "\n" for en, _ in pairs), encoding="utf-8")
        korean.write_text("".join(ko + "\n" for _, ko in pairs), encoding="utf-8")
    add_source_row(raw_dir / "SOURCES.md", name, len(pairs), domain, origin or ", ".join(map(str, files)), licence)
    return len(pairs)
