import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from seq2seq.bench.decoding import bench_decode, bench_paragraphs, bench_stream, bench_translate
from seq2seq.bench.memory import bench_memory, plateau_start
from seq2seq.bench.serving import bench_health, free_port
from seq2seq.bench.sweeps import params_after, sweep_overrides, sweep_runs
from seq2seq.bench.training import TrainerRun
from seq2seq.checkpoint import read_checkpoint
from seq2seq.config import load_params
from seq2seq.device import AVX2_EMULATION, memory_mib
from seq2seq.train import train
from tests.conftest import DOMAIN_CONTROL, ROOT, link_tiny_data, tiny_params, tiny_paths, write_tiny_params


def test_memory_readings_follow_an_allocation() -> None:
    """Touching 256 MiB raises the resident reading by about that much, and the peak with it; freeing
    it lowers the reading again while the peak stays."""
    before, _ = memory_mib()
    block = bytearray(256 << 20)  # zero-filled: every page is written
    holding, peak = memory_mib()
    assert memory_mib(os.getpid())[0] == pytest.approx(holding, abs=2)  # another process's reading, by pid
    del block
    after, peak_after = memory_mib()
    assert 240 < holding - before < 280
    assert peak >= holding and peak_after == pytest.approx(peak, abs=1)  # the kernel's counters lag by a few pages
    assert holding - after > 240


def test_bench_memory_reports_memory_against_steps(tiny_workdir: Path) -> None:
    """Readings every 3 steps; the last line is the plateau that those readings show, or says there is none."""
    lines = list(bench_memory(tiny_params(), max_steps=9, every=3, window=3, paths=tiny_paths(tiny_workdir)))
    assert "oneDNN kernel cache" in lines[0]
    readings = {int(m[1]): float(m[2].replace(",", "")) for line in lines
                if (m := re.match(r"step +(\d+): +([\d,]+) MiB resident", line))}
    assert list(readings)[:2] == [3, 6]
    latest, start = max(readings), plateau_start(readings, window=3)
    if start is None:
        assert latest == 9 and lines[-1] == "no plateau within 9 steps (less than 2% growth over 3 steps)"
    else:
        assert lines[-1] == (f"plateau: {readings[latest]:,.0f} MiB at step {latest}, "
                             f"{readings[start]:,.0f} MiB at step {start}")


@pytest.mark.parametrize(("resident", "expected"), [
    ({100: 1000, 150: 1010}, None),                      # no reading a window before the latest yet
    ({100: 1000, 200: 1100, 300: 1200, 400: 1300}, None),  # grows 8% a window: no plateau
    ({100: 1000, 200: 1100, 300: 1200, 400: 1210}, 300),   # 10% a window, then 0.8%
    ({100: 1000, 200: 1300, 300: 1290}, 200),               # falls back
    ({100: 1000, 150: 1030, 250: 1040}, 150),               # the last reading that far back counts, not the first
])
def test_a_plateau_is_less_than_2_percent_growth_over_the_window(resident: dict[int, float], expected: int | None
                                                                  ) -> None:
    assert plateau_start(resident, window=100) == expected


def test_the_benchmarks_take_the_trainers_own_steps(tiny_workdir: Path, tmp_path: Path) -> None:
    """With source weights (the epoch's weighted sample), domain tags and word dropout on, the steps that
    `bench train` and `bench memory` time leave the weights that the train stage leaves after as many steps."""
    link_tiny_data(tiny_workdir, tmp_path)
    train_config = {**DOMAIN_CONTROL, "average_checkpoints": 0, "word_dropout": 0.2, "max_steps": 24, "valid_every": 24}
    params = tiny_params(train=train_config)
    train(params, tiny_paths(tmp_path))
    run = TrainerRun.set_up(params, tiny_paths(tmp_path))
    assert len(run.data.epoch_batches(run.config, 0, world_size=1)) < 24  # the steps reach the second epoch
    assert len(list(run.steps(24))) == 24
    trained = read_checkpoint(tmp_path / "models/model/last.pt")["weights"]
    assert trained.keys() == run.model.state_dict().keys()
    assert all(torch.equal(run.model.state_dict()[name], trained[name]) for name in trained)


def test_the_kernel_cache_is_bounded_unless_the_user_says_otherwise() -> None:
    def capacity(environment: dict[str, str]) -> str:
        code = "import os, seq2seq; print(os.environ['ONEDNN_PRIMITIVE_CACHE_CAPACITY'])"
        env = {key: value for key, value in os.environ.items() if key != "ONEDNN_PRIMITIVE_CACHE_CAPACITY"}
        return subprocess.run([sys.executable, "-c", code], env={**env, **environment}, capture_output=True,
                              text=True, check=True).stdout.strip()

    assert capacity({}) == "64"
    assert capacity({"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "1024"}) == "1024"


def _run_seq2seq(arguments: list[str], environment: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    env = {name: value for name, value in os.environ.items() if name not in AVX2_EMULATION}
    return subprocess.run([sys.executable, "-m", "seq2seq", *arguments], env={**env, **environment}, cwd=cwd,
                          capture_output=True, text=True)


def test_bench_train_emulates_avx2_and_compares_with_a_baseline_checkout(tiny_workdir: Path, tmp_path: Path) -> None:
    """`--emulate-avx2` restarts under AVX2 kernels; `--baseline` times another checkout's code
    (here this one, with its own params.yaml) and prints the ratio."""
    link_tiny_data(tiny_workdir, tmp_path)
    write_tiny_params(tmp_path)
    baseline = tmp_path / "baseline"
    baseline.mkdir()
    (baseline / "seq2seq").symlink_to(Path(__file__).parent.parent / "seq2seq")
    (baseline / "params.yaml").write_text((tmp_path / "params.yaml").read_text())
    result = _run_seq2seq(["bench", "train", "--steps", "2", "--warmup", "0", "--no-naive", "--emulate-avx2",
                           "--baseline", str(baseline)], {}, tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "class avx2 (emulated: AVX2 kernels only)" in lines[0]
    assert re.match(r"baseline \(.*baseline, its params.yaml\): [\d,]+ target tokens/s", lines[1])
    assert re.match(r"ratio configured / baseline: \d+\.\d\dx", lines[-1])


def test_bench_train_without_the_prepared_data_says_what_to_run(tiny_workdir: Path, tmp_path: Path) -> None:
    """The trainer's data includes the prepared valid references and source names: without them, one line."""
    for part in ("data/encoded", "models/tokenizer"):
        (tmp_path / part).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / part).symlink_to(tiny_workdir / part)
    write_tiny_params(tmp_path)
    result = _run_seq2seq(["bench", "train", "--steps", "1", "--no-naive"], {}, tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: data/prepared/valid.ko not found: run `dvc repro encode` first"]


def test_bench_train_refuses_a_baseline_without_the_package(tmp_path: Path) -> None:
    write_tiny_params(tmp_path)
    result = _run_seq2seq(["bench", "train", "--steps", "1", "--no-naive", "--baseline", str(tmp_path)], {},
                          tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"error: {tmp_path} holds no seq2seq package (pass a "
                                                  "checkout, e.g. `git worktree add DIR main`)"]


def test_decoding_benchmarks_report_each_setting(tiny_workdir: Path, tmp_path: Path) -> None:
    """`bench translate`, `bench decode` and `bench paragraphs` on the tiny model: a line (or row) for
    each setting, with the figures each names."""
    model, prepared = tiny_workdir / "models/model/best.pt", tiny_workdir / "data/prepared"
    write_tiny_params(tmp_path)
    lines = list(bench_translate(model, prepared / "test.en", [1, 2], batch_size=4, limit=6))
    assert lines[0].startswith(f"6 sentences of {prepared / 'test.en'}, batch size 4")
    assert [re.fullmatch(r"(beam \d): [\d,.]+ sentences/s \([\d.]+ s\)", line)[1] for line in lines[1:]] == [
        "beam 1", "beam 2"]
    lines = list(bench_decode(model, prepared, "valid", 6, [1, 2], [0.6, 1.0], [0, 3],
                              load_params(tmp_path / "params.yaml").evaluate))
    settings = [re.fullmatch(r"beam (\d) length_penalty (\S+) no_repeat_ngram (\d): chrF [\d.]+ BLEU [\d.]+ "
                             r"length ratio [\d.]+ \(\d+ s\)", line).groups() for line in lines[1:]]
    assert settings == [("1", "-", "0"), ("1", "-", "3"), ("2", "0.6", "0"), ("2", "0.6", "3"), ("2", "1.0", "0"),
                        ("2", "1.0", "3")]  # beam 1 ignores the length penalty: tried once
    lines = list(bench_paragraphs(model, prepared, 7, tmp_path / "params.yaml"))
    assert lines[0] == f"2 paragraphs of 3 lines of {prepared}/valid, model {model}"
    rows = [re.fullmatch(r"\| (.+) \| (on|off|-) \| [\d.]+ \| [\d.]+ \| (?:\d+ )?\|", line).groups()
            for line in lines[3:]]
    assert rows == [("paragraphs", "off"), ("paragraphs", "on"), ("the lines one by one, joined", "-")]


def test_stream_and_health_benchmarks_run_the_real_commands(tiny_workdir: Path) -> None:
    """`bench stream` pipes lines through `seq2seq translate`; `bench health` asks a `seq2seq serve`
    process for /health while it answers attention requests."""
    model, sources = tiny_workdir / "models/model/best.pt", tiny_workdir / "data/prepared/test.en"
    slow, fast = bench_stream(model, sources, gap=0, slow_lines=2, file_lines=6, load_seconds=0)
    assert re.fullmatch(r"slow input, a line every 0 s: first line out \d+ ms after it went in, median \d+ ms, "
                        r"max \d+ ms over 2 lines", slow)
    assert re.fullmatch(r"fast input \(6 lines at once\): [\d.]+ sentences/s through the pipe; [\d.]+ in one "
                        r"Translator.translate call", fast)
    (line,) = bench_health(model, sources, seconds=1, port=free_port())
    found = re.fullmatch(r"(\d+) sentences, (\d+) characters, attention: (\d+) answers of [\d.]+ MB; /health: "
                         r"(\d+) requests, p50 [\d.]+ ms, p99 [\d.]+ ms, max [\d.]+ ms", line)
    assert found and int(found[1]) == min(32, len(sources.read_text().splitlines())) and int(found[4]) > 10


SHIPPED_SWEEPS = sorted(str(path.relative_to(ROOT)) for pattern in ("presets/*.yaml", "bench/sweeps/*.yaml")
                        for path in ROOT.glob(pattern))


@pytest.mark.parametrize("sweep_path", SHIPPED_SWEEPS)
def test_every_shipped_sweep_runs_with_the_values_it_names(sweep_path: str) -> None:
    """Each run of a shipped sweep or preset, applied to params.yaml by DVC's own override code (as
    `dvc exp run -S` applies it), passes the params check (a typo shows here, not hours into a queue)
    and runs with exactly the values it names, mappings replaced whole; the other keys keep params.yaml's."""
    sweep = yaml.safe_load((ROOT / sweep_path).read_text(encoding="utf-8"))
    shipped = load_params(ROOT / "params.yaml")
    overrides = sweep_overrides(sweep, yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8")))
    for name, run in sweep_runs(sweep).items():
        params = params_after(ROOT / "params.yaml", overrides[name])
        for section, values in run.items():
            for key, value in values.items():
                assert getattr(getattr(params, section), key) == value, (name, section, key)
        untouched = [f.name for f in dataclasses.fields(shipped.train) if f.name not in run.get("train", {})]
        assert all(getattr(params.train, key) == getattr(shipped.train, key) for key in untouched), name


def test_the_recipe_baseline_runs_without_source_weights() -> None:
    """The sweep's "baseline" is the run without source weights, not params.yaml's weights merged in."""
    sweep = yaml.safe_load((ROOT / "bench/sweeps/recipe.yaml").read_text(encoding="utf-8"))
    overrides = sweep_overrides(sweep, yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8")))
    assert load_params(ROOT / "params.yaml").train.source_weights  # something to replace
    assert params_after(ROOT / "params.yaml", overrides["baseline"]).train.source_weights == {}
    assert params_after(ROOT / "params.yaml", overrides["weights"]).train.source_weights == {
        "pydocs": 0.1, "bible": 0.1, "django-docs": 0.3, "gnome-help": 0.3}


def test_a_sweep_sets_mappings_that_params_yaml_lacks(tmp_path: Path) -> None:
    params_path = tmp_path / "params.yaml"
    params_path.write_text("train:\n  max_steps: 10\n")
    sweep = {"runs": {"none": {"train": {"source_weights": {}}}, "some": {"train": {"source_weights": {"a": 2}}}}}
    overrides = sweep_overrides(sweep, yaml.safe_load(params_path.read_text()))
    assert overrides == {"none": [], "some": ["++train.source_weights={a: 2}"]}
    assert params_after(params_path, overrides["some"]).train.source_weights == {"a": 2.0}


def test_a_sweep_with_a_bad_run_queues_nothing(tmp_path: Path) -> None:
    write_tiny_params(tmp_path)
    (tmp_path / "sweep.yaml").write_text("runs: {good: {}, bad: {train: {max_stepz: 10}}}\n")
    result = _run_seq2seq(["bench", "queue", "sweep.yaml"], {}, tmp_path)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "error: sweep.yaml, run bad: unknown key 'train.max_stepz' in params; valid keys: " + ", ".join(
            f.name for f in dataclasses.fields(load_params(tmp_path / "params.yaml").train))]


def test_a_sweep_runs_as_dvc_queued_experiments(tmp_path: Path) -> None:
    """Each run of a sweep file becomes a queued DVC experiment; DVC's queue runs them, each with
    the source weights it names (replacing params.yaml's, not merged into them), and `dvc exp show`
    holds each one's params and headline metrics."""
    import json
    import time

    from tests.conftest import TINY_PARAMS, write_tiny_project

    write_tiny_project(tmp_path, {**TINY_PARAMS, "train": {**TINY_PARAMS["train"],
                                                           "source_weights": {"toy-a": 2, "toy-b": 0.25}}})
    sweep = {"base": {"train": {"max_steps": 20, "valid_every": 10, "source_weights": {}}},
             "runs": {"short": {}, "longer": {"train": {"max_steps": 30, "source_weights": {"toy-b": 0.5}}}}}
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(sweep))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}

    def run(*command: str) -> str:
        result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        return result.stdout

    run("git", "init", "-q")
    run(sys.executable, "-m", "dvc", "init", "-q")
    run("git", "add", "-A")
    run("git", "commit", "-q", "-m", "tiny project")
    queued = run(sys.executable, "-m", "seq2seq", "bench", "queue", "sweep.yaml").splitlines()
    longer = next(command for command in queued if "--name longer" in command)
    assert longer.startswith("dvc exp run --queue --name longer -S ++train.max_steps=30 ")
    assert "-S '~train.source_weights' -S '++train.source_weights={toy-b: 0.5}'" in longer
    run(sys.executable, "-m", "dvc", "queue", "start", "--jobs", "1")
    deadline = time.monotonic() + 240
    while "Queued" in (status := run(sys.executable, "-m", "dvc", "queue", "status")) or "Running" in status:
        assert time.monotonic() < deadline, status
        time.sleep(2)
    assert status.count("Success") == 2, status
    shown = json.loads(run(sys.executable, "-m", "dvc", "exp", "show", "--json"))
    experiments = {exp["name"]: exp["revs"][0]["data"] for commit in shown for exp in commit["experiments"] or []}
    steps = {name: data["metrics"]["metrics/evaluate.json"]["data"]["steps"] for name, data in experiments.items()}
    assert steps == {"short": 20, "longer": 30}
    weights = {name: data["params"]["params.yaml"]["data"]["train"].get("source_weights")
               for name, data in experiments.items()}
    assert weights == {"short": None, "longer": {"toy-b": 0.5}}
