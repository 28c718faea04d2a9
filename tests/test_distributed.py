"""Two-process DDP on the CPU (gloo), started through torchrun as a user would."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from seq2seq.checkpoint import read_checkpoint
from seq2seq.train import Distributed
from tests.conftest import write_tiny_params
from tests.ddp_gradients import global_batch_gradients
from tests.test_train import copy_data

ROOT = Path(__file__).parent.parent


def torchrun(args: list[str], cwd: Path, timeout: int = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "SEQ2SEQ_DIST_TIMEOUT_MINUTES": "2"}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_first_step_gradients_equal_one_process_on_the_global_batch(tiny_workdir: Path, tmp_path: Path) -> None:
    result = torchrun([str(ROOT / "tests/ddp_gradients.py"), str(tmp_path / "ddp.pt"), str(tiny_workdir)], cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    distributed = torch.load(tmp_path / "ddp.pt")
    single = global_batch_gradients(tiny_workdir, Distributed(torch.device("cpu")))
    assert distributed.keys() == single.keys()
    for name, gradient in single.items():
        torch.testing.assert_close(distributed[name], gradient, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("nproc_from_params", [False, True], ids=["torchrun", "train.nproc"])
def test_two_process_training_writes_once_and_resumes_on_one(tiny_workdir: Path, tmp_path: Path,
                                                             nproc_from_params: bool) -> None:
    copy_data(tiny_workdir, tmp_path)
    write_tiny_params(tmp_path, max_steps=10, valid_every=5, nproc=2 if nproc_from_params else 1)
    if nproc_from_params:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
        result = subprocess.run([sys.executable, "-m", "seq2seq", "train"], cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=240)
    else:
        result = torchrun(["-m", "seq2seq", "train"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stderr.count("step 5: valid") == 1  # rank 0 alone validates and logs
    assert sorted(p.name for p in (tmp_path / "models/model").iterdir()) == ["best.pt", "last.pt"]
    progress = read_checkpoint(tmp_path / "models/model/last.pt")["training_state"]["progress"]
    assert progress["step"] == 10 and progress["batches_done"] % 2 == 0  # two batches a step
    assert json.loads((tmp_path / "dvclive/metrics.json").read_text())["step"] == 10

    # Resume the 2-process run in a single process.
    write_tiny_params(tmp_path, max_steps=13, valid_every=5, nproc=1)
    result = subprocess.run([sys.executable, "-m", "seq2seq", "train", "--resume"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "step 5: valid" not in result.stderr and "step 13: valid" in result.stderr
    progress = read_checkpoint(tmp_path / "models/model/last.pt")["training_state"]["progress"]
    assert progress["step"] == 13
