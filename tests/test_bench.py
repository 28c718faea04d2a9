import copy
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from seq2seq import device
from seq2seq.bench.memory import bench_memory
from seq2seq.bench.sweeps import sweep_overrides
from seq2seq.config import CPU_CLASSES, parse_params
from seq2seq.device import AVX2_EMULATION, cpu_class, cpu_vendor, memory_mib
from tests.conftest import ROOT, tiny_params, tiny_paths, write_tiny_params


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
    lines = list(bench_memory(tiny_params(), max_steps=9, every=3, window=3, paths=tiny_paths(tiny_workdir)))
    assert "oneDNN kernel cache" in lines[0]
    steps = [int(m.group(1)) for line in lines if (m := re.match(r"step +(\d+): +[\d,]+ MiB resident", line))]
    assert steps[:2] == [3, 6]
    assert lines[-1].startswith(("plateau: ", "no plateau within 9 steps"))


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


def test_cpu_class_follows_the_kernels_torch_uses(tmp_path: Path) -> None:
    code = "from seq2seq.device import cpu_class; print(cpu_class())"
    emulated = subprocess.run([sys.executable, "-c", code], env={**os.environ, **AVX2_EMULATION},
                              capture_output=True, text=True, check=True)
    assert emulated.stdout.strip() == "avx2"
    assert cpu_class() in CPU_CLASSES


@pytest.mark.parametrize(("capability", "avx512_bf16", "amx", "vendor", "expected"), [
    ("AVX2", True, True, "GenuineIntel", "avx2"),      # emulated: torch's kernels decide
    ("AVX512", False, False, "GenuineIntel", "avx512"),  # Intel Xeon Skylake to Ice Lake
    ("AVX512", True, False, "GenuineIntel", "avx512"),   # Cooper Lake, or AMX hidden: float32 is faster
    ("AVX512", True, True, "GenuineIntel", "bf16"),      # Intel Xeon Sapphire Rapids and later
    ("AVX512", True, False, "AuthenticAMD", "bf16"),     # AMD Zen 4 and later
])
def test_fast_bf16_makes_the_bf16_class(monkeypatch: pytest.MonkeyPatch, capability: str, avx512_bf16: bool,
                                        amx: bool, vendor: str, expected: str) -> None:
    """The class follows the CPU's features (probes set here; the real ones are read above)."""
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    monkeypatch.setattr(device, "cpu_vendor", lambda: vendor)
    assert cpu_class() == expected


@pytest.mark.skipif(not (sys.platform == "linux" and platform.machine() == "x86_64"), reason="x86 Linux only")
def test_cpu_vendor_is_read_from_the_machine() -> None:
    assert cpu_vendor() in ("GenuineIntel", "AuthenticAMD")


def test_bench_train_emulates_avx2_and_compares_with_a_baseline_checkout(tiny_workdir: Path, tmp_path: Path) -> None:
    """`--emulate-avx2` restarts under AVX2 kernels; `--baseline` times another checkout's code
    (here this one, with its own params.yaml) and prints the ratio."""
    for part in ("data/encoded", "models/tokenizer"):
        (tmp_path / part).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / part).symlink_to(tiny_workdir / part)
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


def test_bench_train_refuses_a_baseline_without_the_package(tmp_path: Path) -> None:
    write_tiny_params(tmp_path)
    result = _run_seq2seq(["bench", "train", "--steps", "1", "--no-naive", "--baseline", str(tmp_path)], {},
                          tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"error: {tmp_path} holds no seq2seq package (pass a "
                                                  "checkout, e.g. `git worktree add DIR main`)"]


SHIPPED_SWEEPS = sorted(str(path.relative_to(ROOT)) for pattern in ("presets/*.yaml", "bench/sweeps/*.yaml")
                        for path in ROOT.glob(pattern))


@pytest.mark.parametrize("sweep_path", SHIPPED_SWEEPS)
def test_every_shipped_sweep_and_preset_gives_valid_params(sweep_path: str) -> None:
    """Each run of a shipped sweep or preset, applied to params.yaml as its `-S ++section.key=value`
    overrides would apply it, passes the params check: a typo shows here, not hours into a queue."""
    sweep = yaml.safe_load((ROOT / sweep_path).read_text(encoding="utf-8"))
    shipped_params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    for overrides in sweep_overrides(sweep).values():
        params = copy.deepcopy(shipped_params)
        for override in overrides:
            key, value = override.removeprefix("++").split("=", 1)
            section, field = key.split(".", 1)
            params[section][field] = yaml.safe_load(value)
        parse_params(params)  # raises ConfigError naming the key


def test_a_sweep_runs_as_dvc_queued_experiments(tmp_path: Path) -> None:
    """Each run of a sweep file becomes a queued DVC experiment; DVC's queue runs them and
    `dvc exp show` holds each one's headline metrics."""
    import json
    import time

    import yaml

    from tests.conftest import write_tiny_project

    write_tiny_project(tmp_path)
    sweep = {"base": {"train": {"max_steps": 20, "valid_every": 10}},
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
    assert "-S '++train.source_weights={toy-b: 0.5}'" in longer
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
