"""`seq2seq import`: a TSV, a Moses pair or a TMX file becomes a source of data/raw, and `dvc repro` trains on it."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from seq2seq.cli import main
from seq2seq.corpus_import import import_corpus
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


def write_tmx(path: Path, pairs: list[tuple[str, str]], korean_code: str = "ko-KR") -> Path:
    units = "".join(f'<tu><tuv xml:lang="en-US"><seg>{en}</seg></tuv>'
                    f'<tuv xml:lang="{korean_code}"><seg>{ko}</seg></tuv></tu>\n' for en, ko in pairs)
    path.write_text(f'<?xml version="1.0" encoding="UTF-8"?>\n<tmx version="1.4"><header srclang="en"/>'
                    f"<body>\n{units}</body></tmx>\n", encoding="utf-8")
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


def test_imported_sources_train_with_dvc_repro(tmp_path: Path) -> None:
    """The three forms imported with the command as a user runs it, then the real pipeline on them."""
    write_tiny_project(tmp_path)
    pairs = toy_pairs()
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    # toy-b's pairs (toy-a holds the others), in three parts
    forms = {"from-tsv": [write_tsv(inputs / "a.tsv", pairs[1::6])], "from-moses": write_moses(inputs, pairs[3::6]),
             "from-tmx": [write_tmx(inputs / "c.tmx", pairs[5::6])]}
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
