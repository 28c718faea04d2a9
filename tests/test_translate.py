import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from seq2seq.cli import main
from seq2seq.translate import Translator
from tests.conftest import toy_pairs

HANGUL = re.compile(r"[\uac00-\ud7a3]")


@pytest.fixture(scope="module")
def model_path(tiny_workdir: Path) -> str:
    return str(tiny_workdir / "models/model/best.pt")


def run(args: list[str], input: str | None = None):
    return CliRunner().invoke(main, args, input=input)


def test_translates_an_argument(model_path: str) -> None:
    english, korean = toy_pairs()[0]
    result = run(["translate", "--model", model_path, english])
    assert result.exit_code == 0, result.output
    assert result.stdout == korean + "\n"


def test_several_arguments_keep_their_order(model_path: str) -> None:
    pairs = toy_pairs()[:4]
    result = run(["translate", "--model", model_path, "--beam", "1", *[en for en, _ in pairs]])
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [ko for _, ko in pairs]


def test_stdin_streams_lines_and_keeps_empty_ones(model_path: str) -> None:
    pairs = toy_pairs()[:3]
    lines = [pairs[0][0], "", "   ", pairs[1][0], pairs[2][0]]
    for args in (["translate", "--model", model_path], ["translate", "--model", model_path, "-"]):
        result = run(args, input="\n".join(lines) + "\n")
        assert result.exit_code == 0
        assert result.stdout.splitlines() == [pairs[0][1], "", "", pairs[1][1], pairs[2][1]]


def test_empty_argument_is_an_error(model_path: str) -> None:
    result = run(["translate", "--model", model_path, ""])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: an empty sentence")
    assert result.stdout == ""


def test_odd_characters_do_not_crash(model_path: str) -> None:
    result = run(["translate", "--model", model_path, "I ate 😀 鬱陵島 \x07 bread.", "ñ"])
    assert result.exit_code == 0
    assert len(result.stdout.splitlines()) == 2


def test_long_input_is_truncated_with_a_warning(model_path: str) -> None:
    warnings: list[str] = []
    translator = Translator(Path(model_path), beam_size=1, warn=warnings.append)
    long_sentence = " ".join(en for en, _ in toy_pairs()[:40])
    (output,) = translator.translate([long_sentence])
    assert isinstance(output, str)
    assert len(warnings) == 1 and "translating its first 100" in warnings[0]


def test_missing_model_says_dvc_repro(tmp_path: Path) -> None:
    result = run(["translate", "--model", str(tmp_path / "none.pt"), "Hello."])
    assert result.exit_code == 1
    assert "dvc repro" in result.stderr and "Traceback" not in result.stderr


def test_corrupt_model_names_the_file(tmp_path: Path) -> None:
    corrupt = tmp_path / "broken.pt"
    corrupt.write_bytes(b"not a checkpoint at all")
    result = run(["translate", "--model", str(corrupt), "Hello."])
    assert result.exit_code == 1
    assert str(corrupt) in result.stderr and len(result.stderr.splitlines()) == 1


def test_attention_heatmap_is_a_png(model_path: str, tmp_path: Path) -> None:
    png = tmp_path / "attention.png"
    result = run(["translate", "--model", model_path, "--attention", str(png), toy_pairs()[5][0]])
    assert result.exit_code == 0, result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    height, width, _ = matplotlib.image.imread(png).shape
    assert height > 100 and width > 100


def test_attention_heatmap_draws_every_korean_glyph(model_path: str, tmp_path: Path) -> None:
    """With the packaged font, no glyph is missing (matplotlib warns for each one it draws as a box)."""
    import warnings

    from seq2seq.translate import plot_attention

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plot_attention(["▁I", "▁ate"], ["▁나는", "▁사과를", "</s>"], torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]]),
                       tmp_path / "korean.png")
    assert (tmp_path / "korean.png").stat().st_size > 1000


def test_command_line_process_exit_codes(model_path: str) -> None:
    english, korean = toy_pairs()[0]
    ok = subprocess.run([sys.executable, "-m", "seq2seq", "translate", "--model", model_path, english],
                        capture_output=True, text=True, timeout=120)
    assert (ok.returncode, ok.stdout) == (0, korean + "\n")
    bad = subprocess.run([sys.executable, "-m", "seq2seq", "translate", "--model", "nowhere.pt", english],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and bad.stdout == "" and bad.stderr.startswith("error:")


def test_attention_needs_one_sentence_argument(model_path: str, tmp_path: Path) -> None:
    for args in (["-"], ["One.", "Two."]):
        result = run(["translate", "--model", model_path, "--attention", str(tmp_path / "a.png"), *args])
        assert result.exit_code == 1 and "--attention draws one sentence" in result.stderr


def test_int8_quantized_translator_still_translates(model_path: str) -> None:
    from torch.ao.nn.quantized.dynamic import Linear as QuantizedLinear

    translator = Translator(Path(model_path), beam_size=2, quantize=True)
    assert isinstance(translator.model.decoder.output, QuantizedLinear)
    english, korean = toy_pairs()[3]
    result = run(["translate", "--model", model_path, "--quantize", english])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == translator.translate([english])[0]
    assert HANGUL.search(result.output)
