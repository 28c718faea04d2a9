"""The GPU recipe (`recipes.cuda`, docs/gpu.md): chosen on class cuda only, checked as params.yaml is,
printed, recorded in dvclive/metrics.json and best.pt, shown by `seq2seq params`; and the GPU readings."""

import importlib.util
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner

from seq2seq.checkpoint import read_checkpoint
from seq2seq.cli import main
from seq2seq.config import CPU_CLASSES, ConfigError, apply_recipe, load_params, parse_params
from seq2seq.train import train
from seq2seq.training_budget import run_params
from seq2seq.training_report import GpuMonitor, gpu_utilization_reader, nvidia_smi_utilization
from tests.conftest import ROOT, link_tiny_data, tiny_params, tiny_paths

TINY_RECIPE = {"cuda": {"model": {"embedding_size": 24, "dropout": 0.1}, "train": {"valid_every": 25}}}


def test_the_recipe_is_chosen_on_class_cuda_only() -> None:
    params = tiny_params(recipes=TINY_RECIPE)
    on_gpu = run_params(params, "cuda")
    assert on_gpu.recipe == "cuda" and on_gpu.params.model.embedding_size == 24
    assert on_gpu.changed == {"model.embedding_size": (32, 24), "model.dropout": (0.0, 0.1),
                              "train.valid_every": (50, 25)}
    assert on_gpu.params.train.learning_rate == params.train.learning_rate  # keys it does not name stay
    for cpu in CPU_CLASSES:
        on_cpu = run_params(params, cpu)
        assert (on_cpu.recipe, on_cpu.params, on_cpu.changed) == ("none", params, {})
    off = run_params(tiny_params(recipes=TINY_RECIPE, train={"recipe": "off"}), "cuda")
    assert (off.recipe, off.params.model.embedding_size, off.changed) == ("off", 32, {})
    reverse = run_params(params, "cuda", reverse=True)
    assert (reverse.recipe, reverse.params.model.embedding_size) == ("none", 32)


def test_the_repository_recipe_is_the_measured_row() -> None:
    """Bigger, regularised, big batches (docs/gpu.md); steps from the class table; CPUs as written."""
    params = load_params(ROOT / "params.yaml")
    gpu = apply_recipe(params, "cuda")
    model, config = gpu.model, gpu.train
    assert (model.embedding_size, model.encoder_layers, model.encoder_hidden_size, model.bidirectional,
            model.decoder_hidden_size, model.dropout) == (512, 2, 512, True, 512, 0.3)
    assert (config.batch_tokens, config.learning_rate, config.word_dropout, config.cooldown) == (8192, 0.002, 0.1, 0.2)
    assert config.max_steps_by_cpu_class["cuda"] == 16000 and config.recipe == "auto"
    assert all(apply_recipe(params, cpu) is params for cpu in CPU_CLASSES)


@pytest.mark.parametrize(
    ("recipe", "message"),
    [
        ({"model": {"embeding_size": 512}}, "recipes.cuda: unknown key 'model.embeding_size'"),
        ({"model": {"dropout": 1.5}}, "recipes.cuda: model.dropout: must be in [0, 1)"),
        ({"model": {"cell": "transformer"}}, "recipes.cuda: model.cell: 'transformer' is not one of"),
        ({"train": {"batch_tokens": "big"}}, "recipes.cuda: train.batch_tokens: expected int, got 'big'"),
        ({"model": {"dropout": [0.1]}}, "recipes.cuda.model.dropout: expected int or float or bool or str"),
        ({"evaluate": {"beam_size": 2}}, "recipes.cuda.evaluate: a recipe sets model and train keys only"),
        ({"train": {"device": "cpu"}}, "recipes.cuda.train.device: not in a recipe"),
        ({"train": {"max_steps": 10}}, "recipes.cuda.train.max_steps: not in a recipe: each class's steps are in"),
        ({"model": {"attention": "dot", "decoder_hidden_size": 300}}, "recipes.cuda: model.attention: 'dot' needs"),
    ],
)
def test_a_bad_recipe_names_its_key_on_every_machine(recipe: dict, message: str) -> None:
    """Checked when params.yaml loads, whatever the machine: a CPU run refuses a bad GPU recipe too."""
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        parse_params({"recipes": {"cuda": recipe}})


def test_a_bad_recipe_is_one_line_of_the_cli(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text("recipes:\n  cuda:\n    model: {dropout: 2}\n")
    for command in (["train"], ["params", "--class", "bf16"]):
        result = CliRunner().invoke(main, [*command, "--params", str(tmp_path / "params.yaml")])
        assert result.exit_code == 1
        assert result.stderr == "error: recipes.cuda: model.dropout: must be in [0, 1)\n"


def test_params_prints_the_effective_params_of_a_class() -> None:
    result = CliRunner().invoke(main, ["params", "--class", "cuda", "--params", str(ROOT / "params.yaml")])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "# params for class cuda: recipes.cuda applied (train.recipe: auto), changing 11 keys:"
    assert "#   model.embedding_size: 256 -> 512" in lines and "#   train.batch_tokens: 4096 -> 8192" in lines
    assert "# train.max_steps: 16000 (train.max_steps_by_cpu_class.cuda)" in lines
    printed = yaml.safe_load(result.stdout)
    assert "recipes" not in printed  # applied: the output trains the same anywhere (`train --params`)
    effective = parse_params(printed)
    assert effective.model == apply_recipe(load_params(ROOT / "params.yaml"), "cuda").model
    assert (effective.train.max_steps, effective.train.batch_tokens) == (16000, 8192)

    cpu = CliRunner().invoke(main, ["params", "--class", "avx2", "--params", str(ROOT / "params.yaml")])
    assert cpu.stdout.startswith("# params for class avx2: no recipe for this class: params.yaml's model and "
                                 "train as written\n# train.max_steps: 1650 (train.max_steps_by_cpu_class.avx2)\n")
    assert parse_params(yaml.safe_load(cpu.stdout)).model == load_params(ROOT / "params.yaml").model
    unknown = CliRunner().invoke(main, ["params", "--class", "avx3", "--params", str(ROOT / "params.yaml")])
    assert unknown.exit_code == 1 and unknown.stderr == (
        "error: --class: 'avx3' is not a machine class (avx2, avx512, bf16, cuda)\n")


def test_params_defaults_to_this_machine_class() -> None:
    from seq2seq.device import cpu_class

    result = CliRunner().invoke(main, ["params", "--params", str(ROOT / "params.yaml")])
    here = "cuda" if torch.cuda.is_available() else cpu_class()
    assert result.exit_code == 0 and result.stdout.startswith(f"# params for class {here}: ")


def test_a_run_forced_to_class_cuda_applies_records_and_prints_the_recipe(
        tiny_workdir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """On this CPU, a run told its class is cuda trains the recipe's model and settings, says so at the
    start, and records the recipe in dvclive/metrics.json and best.pt."""
    link_tiny_data(tiny_workdir, tmp_path)
    progress = train(tiny_params(recipes=TINY_RECIPE, train={"max_steps": 50}), tiny_paths(tmp_path), machine="cuda")
    assert [entry["step"] for entry in progress.history] == [25, 50]  # the recipe's valid_every
    err = capsys.readouterr().err
    assert ("params for class cuda: recipes.cuda applied (train.recipe: auto), changing 3 keys:\n"
            "  model.embedding_size: 32 -> 24\n  model.dropout: 0.0 -> 0.1\n  train.valid_every: 50 -> 25\n") in err
    metrics = json.loads((tmp_path / "dvclive/metrics.json").read_text())
    recorded = {"model": {"embedding_size": 24, "dropout": 0.1}, "train": {"valid_every": 25}}
    assert (metrics["recipe"], metrics["recipe_params"]) == ("cuda", recorded)
    assert metrics["target_tokens_per_second"] > 0
    best = read_checkpoint(tmp_path / "models/model/best.pt")
    assert best["model_config"]["embedding_size"] == 24
    assert (best["summary"]["recipe"], best["summary"]["recipe_params"]) == ("cuda", recorded)


def test_a_gpu_recipe_leaves_a_cpu_run_byte_for_byte_as_it_was(tiny_workdir: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """The tiny default run, with a GPU recipe in its params, on this CPU: the same best.pt bytes as
    without one, and metrics that say no recipe applied."""
    link_tiny_data(tiny_workdir, tmp_path)
    train(tiny_params(recipes=TINY_RECIPE), tiny_paths(tmp_path))
    assert (tmp_path / "models/model/best.pt").read_bytes() == (tiny_workdir / "models/model/best.pt").read_bytes()
    assert "no recipe for this class: params.yaml's model and train as written" in capsys.readouterr().err
    metrics = json.loads((tmp_path / "dvclive/metrics.json").read_text())
    assert metrics["recipe"] == "none" and "recipe_params" not in metrics and "gpu_busy_percent" not in metrics


def test_the_gpu_monitor_averages_its_readings_and_skips_missing_ones() -> None:
    readings = iter([50.0, None, 70.0])
    monitor = GpuMonitor(lambda: next(readings, None), every=0.01)
    deadline = time.monotonic() + 10
    while len(monitor.samples) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert monitor.stop() == {"gpu_busy_percent": 60.0, "gpu_busy_samples": 2}
    assert GpuMonitor(lambda: None, every=0.01).stop() == {}
    assert gpu_utilization_reader(torch.device("cpu")) is None  # on a CPU: nothing sampled


def test_nvidia_smi_utilization_reads_the_asked_gpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stand-in nvidia-smi on PATH (this machine has none) that answers as the real one does."""
    fake = tmp_path / "nvidia-smi"
    fake.write_text('#!/bin/sh\n[ "$4" = "00000000:1A:00.0" ] && echo "87" && exit 0\necho "No devices" >&2; exit 6\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert nvidia_smi_utilization("00000000:1A:00.0") == 87.0
    assert nvidia_smi_utilization("3") is None
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    assert nvidia_smi_utilization("0") is None


def test_the_gpu_script_dry_run_prints_its_plan(tmp_path: Path) -> None:
    """Needs no GPU, data or packages: what the lent machine would run."""
    result = subprocess.run([sys.executable, str(ROOT / "bench/gpu_recipe.py"), "--dry-run", "--out",
                             str(tmp_path / "out")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "# default: " in result.stdout and "train.recipe=off" in result.stdout
    assert "train.recipe=auto recipes.cuda.train.max_minutes=3.0" in result.stdout
    assert " train --params $WORK/recipe.yaml --encoded " in result.stdout
    assert not (tmp_path / "out").exists()


def _gpu_script():
    spec = importlib.util.spec_from_file_location("gpu_recipe", ROOT / "bench/gpu_recipe.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_gpu_script_prepares_what_travels_and_summarises(tiny_workdir: Path, tmp_path: Path) -> None:
    """The script's parts that need no GPU: what `--prepare` gathers (and that `seq2seq` runs from it),
    the two runs' params, and a summary row of a run's metrics."""
    script, gpu_dir = _gpu_script(), tmp_path / ".gpu"
    assert script.prepare(tiny_workdir, gpu_dir) < script.TRAVEL_LIMIT_MIB * 2**20
    assert (gpu_dir / "data/encoded/train.ko.ids").exists() and (gpu_dir / "site/dvclive/live.py").exists()
    assert not list(gpu_dir.rglob("*.cpython-*.so"))  # compiled for this Python only: dulwich falls back
    for name, overrides in script.runs(3.0, "cuda").items():
        script.write_params(ROOT / "params.yaml", overrides, tmp_path / f"{name}.yaml")
    default, recipe = (run_params(load_params(tmp_path / f"{name}.yaml"), "cuda") for name in ("default", "recipe"))
    assert (default.recipe, default.params.train.max_minutes, default.params.model.embedding_size) == ("off", 3.0, 256)
    assert (recipe.recipe, recipe.params.train.max_minutes, recipe.params.model.embedding_size) == ("cuda", 3.0, 512)
    shown = subprocess.run(script.params_command(sys.executable, gpu_dir, tmp_path / "recipe.yaml", "cuda"),
                           capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("# params for class cuda: recipes.cuda applied (train.recipe: auto), changing 10")
    metrics = json.loads((tiny_workdir / "dvclive/metrics.json").read_text())
    row = script.summary_row("default", metrics, [{"chrf": "50.0"}, {"chrf": "90.5"}], 0.5)
    assert row.startswith("| default | none | 100 of 100 | ") and row.endswith(" | 50.0, 90.5 |")
    assert row.count("|") == script.SUMMARY_HEADER.splitlines()[0].count("|")
