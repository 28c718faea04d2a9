import os
import re
import subprocess
import sys
from pathlib import Path

from seq2seq.bench import bench_memory
from seq2seq.device import memory_mib
from tests.conftest import tiny_params, tiny_paths


def test_memory_readings_are_plausible() -> None:
    now, peak = memory_mib()
    assert 10 < now <= peak


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
