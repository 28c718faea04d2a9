"""The training run's process: device and CPU threads, its rank under torchrun, seeds, and the stop
signals (Ctrl-C, SIGTERM) that end a run cleanly at a step boundary.

Under `torchrun --nproc_per_node N` every rank is one such process; `Distributed` is how ranks
agree (sums, broadcasts), and is a single process's no-op otherwise.
"""

from __future__ import annotations

import os
import random
import signal
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist

from seq2seq.config import TrainConfig
from seq2seq.device import pick_device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class Distributed:
    """Rank and world size; a single process when not started by torchrun."""

    def __init__(self, device: torch.device) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.device = device  # nccl reduces CUDA tensors only
        if self.world > 1 and not dist.is_initialized():
            backend = "nccl" if device.type == "cuda" else "gloo"
            # A dead rank or a missing rendezvous ends the run with an error after this, not a hang.
            minutes = float(os.environ.get("SEQ2SEQ_DIST_TIMEOUT_MINUTES", "30"))
            dist.init_process_group(backend, timeout=timedelta(minutes=minutes))
            if device.type == "cuda":
                torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def sum(self, value: float) -> float:
        if self.world == 1:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return float(tensor)

    def any(self, flag: bool) -> bool:
        """True on every rank if `flag` is True on any."""
        return self.sum(float(flag)) > 0

    def broadcast(self, values: list[float]) -> list[float]:
        """Rank 0's `values` on every rank."""
        if self.world == 1:
            return values
        tensor = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.broadcast(tensor, src=0)
        return tensor.tolist()

    def close(self) -> None:
        if self.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def start_process(config: TrainConfig) -> tuple[torch.device, Distributed]:
    """Pick the device and CPU threads, join the process group (under torchrun) and seed this rank."""
    device = pick_device(config.device)
    if config.threads:
        torch.set_num_threads(config.threads)
    world = Distributed(device)
    seed_everything(config.seed + world.rank)
    return device, world


class StopRequested(KeyboardInterrupt):
    """Ctrl-C or SIGTERM, acted on at a step boundary, where the training state is consistent.
    `exit_code` is the shell's for the signal: 130 for SIGINT, 143 for SIGTERM (0: the signal came
    to another rank; 130, as for Ctrl-C)."""

    def __init__(self, signal_number: int) -> None:
        super().__init__(signal.Signals(signal_number).name if signal_number else "another rank was stopped")
        self.exit_code = 128 + (signal_number or signal.SIGINT)


class StopSignal:
    """Within `with`: Ctrl-C or SIGTERM sets `requested` (the signal's number, 0 while none came),
    acted on at the next step boundary, where last.pt is saved; a second Ctrl-C stops at once without
    saving (the last.pt on disk is whole: writes are atomic)."""

    def __init__(self) -> None:
        self.requested = 0
        self._previous: dict[int, object] = {}

    def _request(self, signal_number: int, _frame: object) -> None:
        self.requested = self.requested or signal_number
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def __enter__(self) -> StopSignal:
        self._previous = {sig: signal.signal(sig, self._request) for sig in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *_) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def run_under_torchrun(nproc: int, arguments: list[str]) -> int:
    """Run `seq2seq ARGUMENTS` as `nproc` processes under torchrun, torchrun itself in this process (so
    that `kill PID` or a scheduler's SIGTERM reaches it, and it passes the signal to every worker and
    waits for them to save last.pt at a step boundary). Returns the exit code: 0, the first failed
    worker's, or 128 + the signal that stopped the run (130 for Ctrl-C, 143 for SIGTERM)."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main as torchrun

    try:
        torchrun(["--standalone", f"--nproc_per_node={nproc}", "-m", "seq2seq", *arguments])
    except SignalException as stop:
        return 128 + int(stop.sigval)
    except ChildFailedError as failed:  # each worker has said why on stderr
        code = next(iter(failed.failures.values())).exitcode
        return 128 - code if code < 0 else code or 1  # < 0: killed by signal -code
    return 0
