"""Two-process DDP on the CPU (gloo), started through torchrun as a user would."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from seq2seq.checkpoint import read_checkpoint
from seq2seq.data import ParallelData, make_batches
from seq2seq.train import train
from seq2seq.training_process import Distributed
from tests.conftest import link_tiny_data, tiny_params, tiny_paths, write_tiny_params
from tests.ddp_gradients import global_batch_gradients

ROOT = Path(__file__).parent.parent
pytestmark = pytest.mark.xdist_group("torchrun")  # one torchrun at a time: each takes a free port and two cores


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
    link_tiny_data(tiny_workdir, tmp_path)
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


@pytest.mark.parametrize("first_steps", [3, 4], ids=["odd", "even"])
def test_resume_one_to_two_to_one_process(tiny_workdir: Path, tmp_path: Path, first_steps: int) -> None:
    """1 process for `first_steps` steps, 2 processes to step 10 (past the end of epoch 0), 1 process to
    step 12. From an odd position rank 1 used to index past the end of the epoch's batch list."""
    link_tiny_data(tiny_workdir, tmp_path)
    params = tiny_params()
    data = ParallelData.open(tmp_path / "data/encoded", "train")
    batch_count = len(make_batches(data.source.lengths, data.target.lengths, params.train.batch_tokens,
                                   params.train.max_length, seed=params.train.seed))
    assert batch_count == 16  # an even count: an odd position then ends epoch 0 one batch short of a step

    def position() -> tuple[int, int, int]:
        saved = read_checkpoint(tmp_path / "models/model/last.pt")["training_state"]["progress"]
        return saved["step"], saved["epoch"], saved["batches_done"]

    write_tiny_params(tmp_path, max_steps=first_steps, valid_every=50)
    train(tiny_params(train={"max_steps": first_steps, "valid_every": 50}), tiny_paths(tmp_path))
    assert position() == (first_steps, 0, first_steps)

    write_tiny_params(tmp_path, max_steps=10, valid_every=50)
    result = torchrun(["-m", "seq2seq", "train", "--resume"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    # odd: steps 4-9 take batches 3-14, batch 15 alone is skipped, step 10 takes batches 0-1 of epoch 1;
    # even: steps 5-10 take batches 4-15.
    assert position() == ((10, 1, 2) if first_steps % 2 else (10, 0, 16))

    write_tiny_params(tmp_path, max_steps=12, valid_every=50)
    progress = train(tiny_params(train={"max_steps": 12, "valid_every": 50}), tiny_paths(tmp_path), resume=True)
    assert (progress.step, progress.epoch, progress.batches_done) == ((12, 1, 4) if first_steps % 2 else (12, 1, 2))
    assert position() == (progress.step, progress.epoch, progress.batches_done)


def _processes_in(folder: Path) -> list[int]:
    """PIDs of the processes whose working directory is `folder` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if Path(os.readlink(entry / "cwd")) == folder:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@pytest.mark.parametrize("ctrl_c", [False, True], ids=["SIGTERM to the process", "Ctrl-C: SIGINT to the group"])
def test_a_stop_signal_to_a_two_process_train_stops_every_process_and_resumes(tiny_workdir: Path, tmp_path: Path,
                                                                            ctrl_c: bool) -> None:
    """`kill PID` of `seq2seq train` with train.nproc 2 (as a scheduler does), or Ctrl-C in its terminal,
    reaches torchrun and both workers: they save last.pt once, at a step boundary, and none is left running."""
    link_tiny_data(tiny_workdir, tmp_path)
    write_tiny_params(tmp_path, max_steps=100_000, valid_every=5, nproc=2)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "seq2seq", "train"], cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 120
    while not (tmp_path / "models/model/last.pt").exists() and time.time() < deadline:
        time.sleep(0.2)
    if ctrl_c:
        os.killpg(process.pid, signal.SIGINT)  # a terminal signals its whole foreground process group
    else:
        process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=90)
    assert process.returncode == (130 if ctrl_c else 143), stderr[-2000:]  # as a shell reports SIGINT, SIGTERM
    assert _processes_in(tmp_path) == []  # no worker left training
    step = read_checkpoint(tmp_path / "models/model/last.pt")["training_state"]["progress"]["step"]
    saved = f"interrupted at step {step}: saved models/model/last.pt; continue with `seq2seq train --resume`"
    assert stderr.count("interrupted at step") == stderr.count(saved) == 1, stderr[-2000:]  # rank 0 alone saved it
    assert "Traceback" not in stderr
    write_tiny_params(tmp_path, max_steps=step + 2, valid_every=5, nproc=1)
    result = subprocess.run([sys.executable, "-m", "seq2seq", "train", "--resume"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert read_checkpoint(tmp_path / "models/model/last.pt")["training_state"]["progress"]["step"] == step + 2
