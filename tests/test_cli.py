import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from seq2seq.cli import main

COMMANDS = [[], ["prepare"], ["tokenizer"], ["encode"], ["reverse"], ["backtranslate"], ["distill"], ["train"],
            ["evaluate"], ["calibrate"], ["translate"], ["serve"], ["plots"], ["params"], ["bench"], ["bench", "train"],
            ["bench", "memory"],
            ["bench", "scale"], ["bench", "step"], ["bench", "translate"], ["bench", "decode"], ["bench", "serve"]]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "seq2seq")
def test_help(command: list[str]) -> None:
    result = CliRunner().invoke(main, [*command, "--help"])
    assert result.exit_code == 0
    assert "Usage:" in result.output


def test_only_the_forward_model_reads_synthetic_pairs() -> None:
    assert "--synthetic" in CliRunner().invoke(main, ["train", "--help"]).output
    assert "--synthetic" not in CliRunner().invoke(main, ["reverse", "--help"]).output
    assert "--distilled" in CliRunner().invoke(main, ["train", "--help"]).output
    assert "--distilled" not in CliRunner().invoke(main, ["reverse", "--help"]).output


def test_module_entry_point() -> None:
    result = subprocess.run([sys.executable, "-m", "seq2seq", "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "translate" in result.stdout


def test_bad_params_give_one_line(tmp_path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("train:\n  lerning_rate: 0.1\n")
    result = CliRunner().invoke(main, ["train", "--params", str(params)])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: unknown key 'train.lerning_rate' in params; valid keys: ")
    assert len(result.stderr.splitlines()) == 1 and "learning_rate" in result.stderr


def test_missing_raw_data_says_dvc_pull(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("prepare:\n  sources: [a]\n  valid_sources: [b]\n")
    result = CliRunner().invoke(main, ["prepare"])
    assert result.exit_code == 1 and "dvc pull" in result.stderr


@pytest.mark.parametrize("command", ["prepare --out", "prepare --stats", "tokenizer --out", "encode --out"])
def test_output_path_under_a_file_is_one_line(tmp_path, monkeypatch, command: str) -> None:
    """Every user-supplied output path is checked before any work: nothing is written."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("prepare:\n  sources: [a]\n  valid_sources: [b]\n")
    (tmp_path / "file").write_text("in the way")
    target = "file/output"
    result = CliRunner().invoke(main, [*command.split(), target])
    assert result.exit_code == 1, result.output
    assert result.stderr == f"error: cannot write {target}: file is a file, not a folder\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "params.yaml"]


def test_backtranslation_without_a_reverse_model_is_one_line(tmp_path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("backtranslation:\n  enabled: true\n")
    result = CliRunner().invoke(main, ["backtranslate", "--params", str(params), "--reverse", str(tmp_path / "none"),
                                       "--out", str(tmp_path / "bt")])
    assert result.exit_code == 1
    assert result.output.startswith("error: ") and "dvc repro reverse" in result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "bt").exists()

def _commands(command: click.Command, name: str = "seq2seq") -> list[tuple[str, click.Command]]:
    found = [(name, command)]
    if isinstance(command, click.Group):
        for sub_name in command.list_commands(click.Context(command)):
            found += _commands(command.get_command(click.Context(command), sub_name), f"{name} {sub_name}")
    return found


def test_every_option_says_what_it_does() -> None:
    """The CLI reference (docs) is generated from these help lines: an option without one is an empty row."""
    silent = [f"{name} --{option.name}" for name, command in _commands(main) for option in command.params
              if isinstance(option, click.Option) and not option.help]
    assert silent == []
