from pathlib import Path

import pytest

from seq2seq.backtranslate import backtranslate, read_monolingual
from seq2seq.config import BacktranslationConfig
from seq2seq.errors import UserError
from seq2seq.translate import Translator
from tests.conftest import TOY_MONO


def run(workdir: Path, out: Path, **settings: object) -> tuple[list[str], list[str], dict]:
    config = BacktranslationConfig(enabled=True, **settings)
    stats = backtranslate(workdir / "data/mono", workdir / "models/reverse", out, config)
    english, korean = ((out / f"train.{lang}").read_text(encoding="utf-8").splitlines() for lang in ("en", "ko"))
    return english, korean, stats


def test_korean_text_becomes_pairs_with_machine_english(reverse_workdir: Path, tmp_path: Path) -> None:
    english, korean, stats = run(reverse_workdir, tmp_path / "bt", search="beam", beam_size=3)
    assert korean == TOY_MONO and len(english) == len(korean) == stats["pairs"]
    # The toy corpus pairs 나는 with "I" and 사과를 with "an apple": the reverse model learnt that.
    pairs = list(zip(english, korean, strict=True))
    assert sum(en.startswith("I ") for en, ko in pairs if ko.startswith("나는 ")) >= 0.8 * sum(
        ko.startswith("나는 ") for ko in korean)
    assert sum("apple" in en for en, ko in pairs if "사과를" in ko) >= 0.8 * sum("사과를" in ko for ko in korean)


def test_sampling_is_seeded_and_differs_from_beam(reverse_workdir: Path, tmp_path: Path) -> None:
    beam, _, _ = run(reverse_workdir, tmp_path / "beam", search="beam")
    sampled, _, _ = run(reverse_workdir, tmp_path / "sampled", search="sampling", seed=1)
    again, _, _ = run(reverse_workdir, tmp_path / "again", search="sampling", seed=1)
    other, _, _ = run(reverse_workdir, tmp_path / "other", search="sampling", seed=2)
    assert sampled == again  # byte-reproducible
    assert sampled != other and sampled != beam


@pytest.mark.parametrize(("search", "beam_size", "sample_seed"), [("beam", 2, None), ("greedy", 1, None),
                                                                 ("sampling", 1, 5)])
def test_back_translation_decodes_as_the_translator_does(reverse_workdir: Path, tmp_path: Path, search: str,
                                                         beam_size: int, sample_seed: int | None) -> None:
    """One decoding path: the Translator of the reverse model, line by line, with the built-in
    decoding settings and the stage's search (its seed for sampling)."""
    english, _, _ = run(reverse_workdir, tmp_path / "bt", search=search, beam_size=2, seed=5)
    translator = Translator(reverse_workdir / "models/reverse/best.pt", beam_size=beam_size, split_sentences=False,
                            params_path=None, sample_seed=sample_seed)
    assert english == translator.translate(TOY_MONO)


def test_long_korean_lines_are_cut_with_one_warning(reverse_workdir: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "mono").mkdir()
    long_line = " ".join(TOY_MONO[:30])
    (tmp_path / "mono/long.ko").write_text(f"{long_line}\n{TOY_MONO[0]}\n{long_line}\n", encoding="utf-8")
    backtranslate(tmp_path / "mono", reverse_workdir / "models/reverse", tmp_path / "bt",
                  BacktranslationConfig(enabled=True, beam_size=1))
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert warnings == ["warning: 2 Korean sentences had more than 100 tokens: their first 100 were translated"]


def test_off_it_writes_empty_files(tmp_path: Path) -> None:
    stats = backtranslate(tmp_path / "no-mono", tmp_path / "no-model", tmp_path / "bt", BacktranslationConfig())
    assert stats == {"enabled": False, "pairs": 0}
    assert [(tmp_path / "bt" / name).read_text() for name in ("train.en", "train.ko")] == ["", ""]


def test_a_sample_of_the_monolingual_text_keeps_file_order(tmp_path: Path) -> None:
    (tmp_path / "b.ko").write_text("셋\n\n넷\n", encoding="utf-8")
    (tmp_path / "a.ko").write_text("하나\n 둘  \n", encoding="utf-8")
    (tmp_path / "notes.txt").write_text("not Korean text to translate\n")
    assert read_monolingual(tmp_path) == ["하나", "둘", "셋", "넷"]
    sample = read_monolingual(tmp_path, max_sentences=2, seed=3)
    assert len(sample) == 2 and sample == [s for s in ["하나", "둘", "셋", "넷"] if s in sample]


def test_missing_text_or_model_is_a_clear_error(reverse_workdir: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"no \*\.ko files in"):
        read_monolingual(tmp_path)
    with pytest.raises(UserError, match="train the reverse model first"):
        backtranslate(reverse_workdir / "data/mono", tmp_path, tmp_path / "bt", BacktranslationConfig(enabled=True))
