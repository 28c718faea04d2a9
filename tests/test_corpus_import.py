"""`seq2seq import`: a TSV, a Moses pair or a TMX file becomes a source of data/raw, and `dvc repro` trains on it."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from seq2seq.cli import main
from seq2seq.corpus_import import import_corpus, read_tmx
from seq2seq.errors import UserError
from tests.conftest import TINY_PARAMS, toy_pairs, write_tiny_project
from tests.test_pipeline import dvc

PAIRS = toy_pairs()[:5]
CARD = """# English-Korean raw corpus

| name | pairs | domain | origin (public repository, path) | licence |
|---|---:|---|---|---|
| old | 10 | news | somewhere | CC0 |

Total: 10 pairs.

Notes
- none
"""


def write_tsv(path: Path, pairs: list[tuple[str, str]]) -> Path:
    path.write_text("".join(f"{en}\t{ko}\n" for en, ko in pairs), encoding="utf-8")
    return path


def write_moses(folder: Path, pairs: list[tuple[str, str]]) -> list[Path]:
    english, korean = folder / "corpus.en", folder / "corpus.ko"
    english.write_text("".join(en + "\n" for en, _ in pairs), encoding="utf-8")
    korean.write_text("".join(ko + "\n" for _, ko in pairs), encoding="utf-8")
    return [english, korean]


def write_tmx(path: Path, pairs: list[tuple[str, str]], korean_code: str = "ko-KR", encoding: str = "UTF-8") -> Path:
    """A TMX file of `pairs` (segments are XML as given) in `encoding`, which its declaration names."""
    units = "".join(f'<tu><tuv xml:lang="en-US"><seg>{en}</seg></tuv>'
                    f'<tuv xml:lang="{korean_code}"><seg>{ko}</seg></tuv></tu>\n' for en, ko in pairs)
    path.write_text(f'<?xml version="1.0" encoding="{encoding}"?>\n<tmx version="1.4"><header srclang="en"/>'
                    f"<body>\n{units}</body></tmx>\n", encoding=encoding.lower())
    return path


def raw_files(raw: Path, name: str) -> list[tuple[str, str]]:
    english, korean = ((raw / f"{name}.{lang}").read_text(encoding="utf-8").splitlines() for lang in ("en", "ko"))
    return list(zip(english, korean, strict=True))


@pytest.mark.parametrize("form", ["tsv", "moses", "tmx"])
def test_each_form_becomes_a_source_with_its_row_in_the_data_card(form: str, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "SOURCES.md").write_text(CARD, encoding="utf-8")
    files = {"tsv": lambda: [write_tsv(tmp_path / "c.tsv", PAIRS)], "moses": lambda: write_moses(tmp_path, PAIRS),
             "tmx": lambda: [write_tmx(tmp_path / "c.tmx", PAIRS)]}[form]()
    assert import_corpus(files, "mine", "CC BY 4.0", raw, domain="chat") == 5  # the form guessed from the files
    assert raw_files(raw, "mine") == PAIRS
    card = (raw / "SOURCES.md").read_text(encoding="utf-8")
    assert "| old | 10 | news | somewhere | CC0 |\n| mine | 5 | chat | " in card
    assert "| CC BY 4.0 |\n\nTotal: 15 pairs." in card


def test_bad_input_is_one_line_naming_the_file_and_nothing_is_written(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "SOURCES.md").write_text(CARD, encoding="utf-8")
    misaligned_tsv = tmp_path / "bad.tsv"
    misaligned_tsv.write_text("One.\t하나.\nTwo. 둘.\n", encoding="utf-8")
    english, korean = write_moses(tmp_path, PAIRS)
    korean.write_text("".join(ko + "\n" for _, ko in PAIRS[:3]), encoding="utf-8")
    latin1 = tmp_path / "latin1.tsv"
    latin1.write_bytes("One.\t하나.\nCafé.\tcafé\n".encode()[:20] + "Café\t카페\n".encode("latin-1", "replace"))
    cases = [
        ([misaligned_tsv], r"bad\.tsv, line 2: 1 tab-separated fields, expected 2"),
        ([english, korean], r"corpus\.en has 5 lines and .*corpus\.ko 3: not aligned .*ko ends first, at line 4"),
        ([latin1], r"latin1\.tsv, line 2: not UTF-8"),
        ([write_tmx(tmp_path / "fr.tmx", PAIRS, korean_code="fr")], r"fr\.tmx: no Korean variant .*found: en, fr"),
        ([tmp_path / "missing.tsv"], r"missing\.tsv: no such file"),
    ]
    for files, message in cases:
        with pytest.raises(UserError, match=message):
            import_corpus(files, "mine", "CC BY 4.0", raw)
    assert sorted(p.name for p in raw.iterdir()) == ["SOURCES.md"]
    assert (raw / "SOURCES.md").read_text(encoding="utf-8") == CARD
    import_corpus([write_tsv(tmp_path / "ok.tsv", PAIRS)], "mine", "CC BY 4.0", raw)
    with pytest.raises(UserError, match="mine.en exists"):
        import_corpus([tmp_path / "ok.tsv"], "mine", "CC BY 4.0", raw)
    result = CliRunner().invoke(main, ["import", str(misaligned_tsv), "--name", "other", "--licence", "CC0",
                                       "--raw", str(raw)])
    assert result.exit_code == 1 and result.stderr.startswith("error: ") and len(result.stderr.splitlines()) == 1


@pytest.mark.parametrize("renames_before_the_kill", [1, 2, 3, 4])
def test_a_rerun_finishes_what_a_killed_import_left(tmp_path: Path, renames_before_the_kill: int) -> None:
    """Killed (no clean-up runs) after each file it renames into place, the import leaves data/raw as
    it was or whole, and the same command run again gives one whole source with one row."""
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "SOURCES.md").write_text(CARD, encoding="utf-8")
    tsv = write_tsv(tmp_path / "c.tsv", PAIRS)
    killing_import = f"""
import os
from pathlib import Path
real_replace, renamed = os.replace, []
def replace_then_die(*paths):
    real_replace(*paths)
    renamed.append(paths)
    if len(renamed) == {renames_before_the_kill}:
        os._exit(9)
os.replace = replace_then_die
from seq2seq.corpus_import import import_corpus
import_corpus([Path({str(tsv)!r})], "mine", "CC0", Path({str(raw)!r}))
"""
    killed = subprocess.run([sys.executable, "-c", killing_import], capture_output=True, text=True, timeout=60)
    assert killed.returncode in (0, 9), killed.stderr  # 0: it renamed fewer files than that
    try:
        assert import_corpus([tsv], "mine", "CC0", raw) == 5
    except UserError as error:  # where the killed one had written the row, it had finished
        assert "mine.en exists" in str(error)
    assert raw_files(raw, "mine") == PAIRS
    card = (raw / "SOURCES.md").read_text(encoding="utf-8")
    assert card.count("| mine | 5 |") == 1 and "Total: 15 pairs." in card
    assert sorted(p.name for p in raw.iterdir()) == ["SOURCES.md", "mine.en", "mine.ko"]


def test_a_failure_before_the_data_card_row_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "SOURCES.md").write_text(CARD, encoding="utf-8")

    def full_disk(*arguments: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("seq2seq.corpus_import.add_source_row", full_disk)
    with pytest.raises(OSError, match="No space"):
        import_corpus([write_tsv(tmp_path / "c.tsv", PAIRS)], "mine", "CC0", raw)
    assert sorted(p.name for p in raw.iterdir()) == ["SOURCES.md"]
    assert (raw / "SOURCES.md").read_text(encoding="utf-8") == CARD


@pytest.mark.parametrize("encoding", ["UTF-8", "UTF-8-SIG", "UTF-16", "UTF-16-LE"])
def test_tmx_as_cat_tools_write_it(tmp_path: Path, encoding: str) -> None:
    """UTF-8 or UTF-16 (byte-order mark or not); inline codes (<bpt>, <ept>, <ph> with its <sub>,
    <it>, <ut>) are formatting, not text, while <hi> is text; a unit with an empty side is a pair
    with an empty line (the prepare stage drops it), one without Korean or with nothing is skipped."""
    segments = [
        ('Press <bpt i="1" x="1">&lt;b&gt;</bpt>Save<ept i="1">&lt;/b&gt;</ept> now.',
         '<it pos="begin" x="1">&lt;i&gt;</it>지금 <hi type="b">저장</hi>을 누르세요.<ut>{\\b0}</ut>'),
        ('A note<ph x="2">&lt;fn text="<sub>See page 2.</sub>"/&gt;</ph> here.', "여기 메모."),
        ("Untranslated.", ""),
        ("", "   "),
    ]
    units = [f'<tu><tuv xml:lang="en"><seg>{en}</seg></tuv><tuv xml:lang="ko"><seg>{ko}</seg></tuv></tu>'
             for en, ko in segments]
    units += ['<tu><tuv xml:lang="en"><seg>English only.</seg></tuv></tu>',
              '<tu><tuv xml:lang="EN-GB"><seg>No segment.</seg></tuv><tuv xml:lang="ko_KR"/></tu>']
    declared = encoding.removesuffix("-SIG").removesuffix("-LE")
    path = tmp_path / "memory.tmx"
    path.write_text(f'<?xml version="1.0" encoding="{declared}"?>\n<!DOCTYPE tmx SYSTEM "tmx14.dtd">\n'
                    f'<tmx version="1.4"><header srclang="en"/><body>\n' + "\n".join(units) + "\n</body></tmx>\n",
                    encoding=encoding.lower())
    assert list(read_tmx(path)) == [("Press Save now.", "지금 저장을 누르세요."), ("A note here.", "여기 메모."),
                                    ("Untranslated.", ""), ("No segment.", "")]


def test_tmx_is_read_as_a_stream_and_bad_tmx_is_one_line(tmp_path: Path) -> None:
    broken_at_the_end = tmp_path / "long.tmx"
    write_tmx(broken_at_the_end, PAIRS)
    broken_at_the_end.write_text(broken_at_the_end.read_text(encoding="utf-8").replace("</body>", "</bdy>"),
                                 encoding="utf-8")
    pairs = read_tmx(broken_at_the_end)
    assert next(pairs) == PAIRS[0]  # before the parser reaches the end of the file
    with pytest.raises(UserError, match=r"long\.tmx, line 8: not well-formed TMX \(mismatched tag, column 2\)"):
        list(pairs)
    entities = tmp_path / "entities.tmx"
    entities.write_text('<?xml version="1.0"?>\n<!DOCTYPE tmx [\n<!ENTITY a "aaaaaaaaaa">\n]>\n<tmx><body/></tmx>\n')
    latin1 = tmp_path / "latin1.tmx"
    latin1.write_bytes('<?xml version="1.0" encoding="UTF-8"?>\n<tmx>\n<body>Café</body></tmx>\n'.encode("latin-1"))
    unknown = tmp_path / "unknown.tmx"
    unknown.write_text('<?xml version="1.0" encoding="x-unknown"?>\n<tmx/>\n')
    for path, message in [(entities, r"entities\.tmx, line 3: an entity declaration .* refused for safety"),
                          (latin1, r"latin1\.tmx, line 3: not well-formed TMX \(not well-formed \(invalid token\)"),
                          (unknown, r"unknown\.tmx: unknown encoding: x-unknown \(convert it to UTF-8")]:
        with pytest.raises(UserError, match=message) as error:
            list(read_tmx(path))
        assert "\n" not in str(error.value)


def test_imported_sources_train_with_dvc_repro(tmp_path: Path) -> None:
    """The three forms imported with the command as a user runs it, then the real pipeline on them."""
    write_tiny_project(tmp_path)
    pairs = toy_pairs()
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    # toy-b's pairs (toy-a holds the others), in three parts
    forms = {"from-tsv": [write_tsv(inputs / "a.tsv", pairs[1::6])], "from-moses": write_moses(inputs, pairs[3::6]),
             "from-tmx": [write_tmx(inputs / "c.tmx", pairs[5::6], encoding="UTF-16")]}  # as CAT tools write it
    for name, files in forms.items():
        command = [sys.executable, "-m", "seq2seq", "import", *map(str, files), "--name", name, "--licence", "CC0"]
        result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert f"add {name} to prepare.sources" in result.stdout
    params = {name: dict(values) for name, values in TINY_PARAMS.items()}
    params["prepare"]["sources"] = ["toy-a", *forms, "toy-valid"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    dvc("init", "--no-scm", "-q", cwd=tmp_path)
    dvc("repro", cwd=tmp_path)
    trained_on = set((tmp_path / "data/prepared/train.source").read_text().splitlines())
    assert trained_on == {"toy-a", *forms}
    assert (tmp_path / "models/model/best.pt").exists()
