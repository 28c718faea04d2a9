"""`seq2seq import`: your own English-Korean corpus as a new source of `data/raw/`.

Reads the usual forms of a parallel corpus, as OPUS and others give them:
- `tsv`: one pair a line, English, a tab, Korean;
- `moses`: two line-aligned files, one English and one Korean (`corpus.en`, `corpus.ko`);
- `tmx`: a TMX translation memory, each `<tu>` with an English and a Korean `<tuv>`.

Writes `data/raw/NAME.en` and `NAME.ko` (one sentence a line, as the prepare stage reads them)
and adds the source's row to `data/raw/SOURCES.md`. The input is read and checked whole before
anything appears in `data/raw/`; a mistake in it is one line naming the file and the line.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import DefusedXMLParser

from seq2seq.errors import UserError
from seq2seq.files import atomic_path, sync, write_text

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


def read_tsv(path: Path) -> Iterator[tuple[str, str]]:
    """Pairs of a TSV file: English, a tab, Korean on each line; empty lines are skipped."""
    for number, line in _lines(path):
        line = line.rstrip("\r\n")
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 2:
            raise UserError(f"{path}, line {number}: {len(fields)} tab-separated fields, expected 2 (English, Korean)")
        yield _one_line(fields[0]), _one_line(fields[1])


def read_moses(english_path: Path, korean_path: Path) -> Iterator[tuple[str, str]]:
    """Pairs of two line-aligned files (the English one first); lines empty on both sides are skipped."""
    english, korean = _lines(english_path), _lines(korean_path)
    for en, ko in itertools.zip_longest(english, korean):
        if en is None or ko is None:
            number = (en or ko)[0]  # the first line the shorter file lacks
            longer = number + sum(1 for _ in (english if ko is None else korean))
            (english_lines, korean_lines), shorter = (((longer, number - 1), korean_path) if ko is None
                                                      else ((number - 1, longer), english_path))
            raise UserError(f"{english_path} has {english_lines:,} lines and {korean_path} {korean_lines:,}: not "
                            f"aligned ({shorter} ends first, at line {number})")
        if en[1].strip() or ko[1].strip():
            yield _one_line(en[1].rstrip("\r\n")), _one_line(ko[1].rstrip("\r\n"))


def _language(tuv: ElementTree.Element) -> str:
    """A `<tuv>`'s language, lower-case and without region: `en-US` -> `en`."""
    code = tuv.get("{http://www.w3.org/XML/1998/namespace}lang") or tuv.get("lang") or ""
    return code.lower().replace("_", "-").split("-")[0]


# TMX 1.4b inline codes: the native formatting codes of the original document (with any <sub>
# sub-flow inside them, e.g. a footnote's text), not the sentence's own words.
_INLINE_CODES = {"bpt", "ept", "it", "ph", "ut"}


def _segment_text(element: ElementTree.Element) -> str:
    """A `<seg>`'s text without its inline codes; the text of `<hi>` (highlighted words) stays."""
    parts = [element.text or ""]
    for child in element:
        if child.tag not in _INLINE_CODES:
            parts.append(_segment_text(child))
        parts.append(child.tail or "")
    return "".join(parts)


def read_tmx(path: Path) -> Iterator[tuple[str, str]]:
    """Pairs of a TMX file, read as a stream: each `<tu>` with an `en` and a `ko` variant (regions
    such as en-US allowed; the first of each language counts). A unit lacking one of the languages
    is skipped; one whose variant is empty or has no `<seg>` is a pair with an empty side (as in the
    other forms; the prepare stage drops such pairs and counts them); a file with neither language
    is an error. UTF-8 or UTF-16 (by its byte-order mark or XML declaration); DTDs may be named, but
    entity declarations are refused (they could expand without bound or read other files)."""
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    parser = DefusedXMLParser(target=ElementTree.TreeBuilder(), forbid_dtd=False, forbid_entities=True,
                              forbid_external=True)
    languages: set[str] = set()
    pairs = 0
    body: ElementTree.Element | None = None
    try:
        for event, element in ElementTree.iterparse(path, events=("start", "end"), parser=parser):
            if event == "start":
                if element.tag == "body":
                    body = element
                continue
            if element.tag != "tu":
                continue
            texts: dict[str, str] = {}
            for tuv in element.iter("tuv"):
                languages.add(_language(tuv))
                segment = tuv.find("seg")
                texts.setdefault(_language(tuv), "" if segment is None else _one_line(_segment_text(segment)))
            if "en" in texts and "ko" in texts and (texts["en"] or texts["ko"]):
                pairs += 1
                yield texts["en"], texts["ko"]
            element.clear()
            if body is not None:
                body.clear()  # drops the units read so far: memory stays flat however long the file
    except ElementTree.ParseError as error:
        line, column = error.position
        reason = str(error).rsplit(": line ", 1)[0]
        raise UserError(f"{path}, line {line}: not well-formed TMX ({reason}, column {column})") from None
    except DefusedXmlException as error:
        raise UserError(f"{path}, line {parser.parser.CurrentLineNumber}: an entity declaration or external "
                        f"reference ({error}); TMX needs none, and they are refused for safety") from None
    except LookupError as error:  # an encoding Python does not know
        raise UserError(f"{path}: {error} (convert it to UTF-8, e.g. with iconv)") from None
    missing = [name for code, name in (("en", "English"), ("ko", "Korean")) if code not in languages]
    if missing:
        found = ", ".join(sorted(languages - {""})) or "none"
        raise UserError(f"{path}: no {' and no '.join(missing)} variant in any <tu> (languages found: {found})")
    if not pairs:
        raise UserError(f"{path}: no <tu> holds both an English and a Korean segment")


def read_corpus(files: list[Path], form: str) -> Iterator[tuple[str, str]]:
    """The (English, Korean) pairs of `files` in the form `form` (one of FORMATS), read as a stream:
    a mistake in the input raises when the reading reaches it."""
    if form == "moses":
        if len(files) != 2:
            raise UserError("the moses form takes two files: the English one, then the Korean one")
        return read_moses(*files)
    if len(files) != 1:
        raise UserError(f"the {form} form takes one file, got {len(files)}")
    return read_tsv(files[0]) if form == "tsv" else read_tmx(files[0])


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


def _card_names(sources_md: Path) -> set[str]:
    """The source names in the data card's table (none without a card)."""
    if not sources_md.exists():
        return set()
    rows = (line.split("|") for line in sources_md.read_text(encoding="utf-8").splitlines() if line.startswith("|"))
    return {cells[1].strip() for cells in rows if len(cells) > 2}


def _undo_interrupted_import(raw_dir: Path, name: str) -> None:
    """Clear what a killed import of `name` left: its temporary files, and, where its journal is
    there but its data-card row is not, NAME.en and NAME.ko, whole or not. With the row written, the
    import had finished: only the journal goes."""
    for lang in ("en", "ko"):
        for temporary in raw_dir.glob(f".{name}.{lang}.*.tmp"):
            temporary.unlink(missing_ok=True)
    journal = raw_dir / f".{name}.importing"
    if not journal.exists():
        return
    if name not in _card_names(raw_dir / "SOURCES.md"):
        for lang in ("en", "ko"):
            (raw_dir / f"{name}.{lang}").unlink(missing_ok=True)
    journal.unlink()
    sync(raw_dir)


def import_corpus(files: list[Path], name: str, licence: str, raw_dir: Path, form: str | None = None,
                  domain: str = "", origin: str = "") -> int:
    """Write `files` as source `name` of `raw_dir` (NAME.en, NAME.ko, a row in SOURCES.md); returns the pairs.

    The input streams into temporary files, renamed into place once it has been read whole. From
    then until the data-card row is written a journal (`.NAME.importing`) marks the files as
    unfinished: an error removes them at once, and a killed import's are removed by the next import
    of `name`, so a rerun never finds a half-imported source in its way.
    """
    if not _NAME.fullmatch(name):
        raise UserError(f"source name {name!r}: use lower-case letters, digits, '.', '_' or '-' (e.g. my-corpus)")
    if not licence.strip():
        raise UserError("give the corpus's licence (--licence): the data card records it for everyone who uses it")
    form = form or guess_format(files)
    if form not in FORMATS:
        raise UserError(f"unknown form {form!r}: one of {', '.join(FORMATS)}")
    if raw_dir.is_dir():
        _undo_interrupted_import(raw_dir, name)
    existing = [path for path in (raw_dir / f"{name}.en", raw_dir / f"{name}.ko") if path.exists()]
    if existing:
        raise UserError(f"{existing[0]} exists: source {name!r} is already in {raw_dir}; choose another name")
    if name in _card_names(raw_dir / "SOURCES.md"):
        raise UserError(f"{raw_dir / 'SOURCES.md'} already has a row for {name!r}; choose another name")
    journal = raw_dir / f".{name}.importing"
    pairs = 0
    try:
        with atomic_path(raw_dir / f"{name}.ko") as korean, atomic_path(raw_dir / f"{name}.en") as english:
            with english.open("w", encoding="utf-8") as english_file, korean.open("w", encoding="utf-8") as korean_file:
                for en, ko in read_corpus(files, form):
                    english_file.write(en + "\n")
                    korean_file.write(ko + "\n")
                    pairs += 1
            if not pairs:
                raise UserError(f"{files[0]}: no pairs found")
            write_text(journal, "an import that has not finished: the next import of this name removes its files\n")
        add_source_row(raw_dir / "SOURCES.md", name, pairs, domain, origin or ", ".join(map(str, files)), licence)
    except BaseException:
        if journal.exists():
            _undo_interrupted_import(raw_dir, name)
        raise
    journal.unlink()
    sync(raw_dir)
    return pairs
