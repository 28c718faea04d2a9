"""The checkpoint files of a training run in its model folder, and where training stands.

`last.pt` holds the weights and everything `--resume` needs (`Progress`, optimizer, random
generators, the batch fingerprint); `best.pt` the weights of the run's best validation (or of an
average of snapshots that beat it); `step-NNNNNN.pt` the snapshots kept for averaging. A fresh run
removes all of them first, so that it is never resumed into, averaged with or judged against another
run. The file format itself is `seq2seq.checkpoint`'s.
"""

from __future__ import annotations

import hashlib
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from seq2seq.checkpoint import average_weights, load_weights, read_checkpoint, save_checkpoint
from seq2seq.config import TrainConfig
from seq2seq.data import ParallelData
from seq2seq.domains import Domains
from seq2seq.errors import UserError
from seq2seq.model import Seq2Seq
from seq2seq.tokenizer import Tokenizer
from seq2seq.training_process import Distributed


@dataclass
class Progress:
    """Where training stands; saved in `last.pt` so that `--resume` continues exactly."""

    step: int = 0
    epoch: int = 0
    batches_done: int = 0  # of this epoch's batch list, summed over all ranks
    best_chrf: float = -1.0
    best_step: int = 0
    validations_without_gain: int = 0
    lr_scale: float = 1.0
    seconds: float = 0.0
    target_tokens: int = 0
    history: list[dict] = field(default_factory=list)


FINGERPRINT_CHUNK = 1 << 22  # array elements hashed at a time


def batch_fingerprint(config: TrainConfig, train_data: ParallelData, weights: np.ndarray | None) -> dict[str, str]:
    """What decides each epoch's batch list and what its batches hold, as plain strings: a resumed run
    must find the same, or its saved position (`batches_done`) would point into another list."""
    data = hashlib.sha256()
    for array in (train_data.source.offsets, train_data.target.offsets, train_data.source.ids, train_data.target.ids):
        for start in range(0, len(array), FINGERPRINT_CHUNK):  # memory-mapped: never all in memory at once
            data.update(np.ascontiguousarray(array[start : start + FINGERPRINT_CHUNK]).tobytes())
    return {
        "train.batch_tokens": str(config.batch_tokens),
        "train.max_length": str(config.max_length),
        "train.seed": str(config.seed),
        "train.subword_alpha": str(config.subword_alpha) if config.subword_alpha else "",
        "train.source_weights": str(sorted(config.source_weights.items())),
        "train.domain_tags": str(config.domain_tags),
        "train.domains": str(list(config.domains.items())) if config.domain_tags else "",
        "sampling weights (train.source, train.source_weights)":
            "" if weights is None else hashlib.sha256(weights.tobytes()).hexdigest(),
        "encoded train data (data/encoded)": f"{len(train_data)} pairs, sha256 {data.hexdigest()}",
    }


def check_fingerprint(path: Path, saved: dict[str, str] | None, current: dict[str, str]) -> None:
    """Refuse to resume when a batch-defining setting differs from the one `path` was trained with."""
    if saved is None:  # a last.pt from before fingerprints were saved
        print(f"warning: {path} does not record its batch settings: unchanged settings assumed", file=sys.stderr)
        return
    changed = [name for name in current if saved.get(name, "") != current[name]]  # absent: off when saved
    if changed:
        name = changed[0]
        detail = f"{saved.get(name) or 'off'} -> {current[name] or 'off'}" if name.startswith("train.") else "changed"
        raise UserError(f"cannot resume from {path}: {name} differs from the run that wrote it ({detail}), so its "
                        f"position in the epoch would point into another batch list; restore it, or train "
                        f"afresh without --resume")


SNAPSHOT_PATTERN = "step-*.pt"


def snapshots(model_dir: Path) -> list[Path]:
    """The kept `step-NNNNNN.pt` snapshots, oldest first (by step: step-1000000 comes after step-999999)."""
    return sorted(model_dir.glob(SNAPSHOT_PATTERN), key=lambda path: int(path.stem.removeprefix("step-")))


def prune_snapshots(model_dir: Path, keep: int) -> None:
    """Delete all but the last `keep` snapshots."""
    for old in snapshots(model_dir)[:-keep]:
        old.unlink()


def recorded_valid_chrf(best_path: Path) -> float:
    """The valid chrF that `best_path` records of itself; -1 when there is no best model yet."""
    if not best_path.exists():
        return -1.0
    return float((read_checkpoint(best_path).get("summary") or {}).get("valid_chrf", -1.0))


class RunCheckpoints:
    """Writes and reads one run's checkpoint files in `model_dir` (rank 0 writes; every rank resumes).

    Every file holds `model`'s weights as they are when written, with the tokenizer, the longest
    trained input and the domain tags that translation needs; last.pt adds the training state.
    """

    def __init__(self, model_dir: Path, model: Seq2Seq, optimizer: torch.optim.Optimizer, tokenizer: Tokenizer,
                 max_length: int, domains: Domains | None, fingerprint: dict[str, str], device: torch.device,
                 recipe: dict | None = None) -> None:
        self.model_dir, self.model, self.optimizer = model_dir, model, optimizer
        self.tokenizer, self.max_length, self.domains = tokenizer, max_length, domains
        self.fingerprint, self.device = fingerprint, device
        self.recipe = recipe or {}  # best.pt's record of an applied recipe; none: the bytes of a run without one
        self.last_path, self.best_path = model_dir / "last.pt", model_dir / "best.pt"

    def clear(self) -> None:
        """Start afresh: remove an earlier run's last.pt (so it is not resumed into), snapshots (so they are
        not averaged in) and best.pt (so that it is not what a resume of this run has to beat). last.pt
        goes first: stopped halfway, nothing is left that resumes the earlier run without its best.pt."""
        for stale in [self.last_path, *snapshots(self.model_dir), self.best_path]:
            stale.unlink(missing_ok=True)

    def save_state(self, progress: Progress) -> None:
        """last.pt: weights plus everything `--resume` needs."""
        state = {
            "progress": vars(progress),
            "optimizer": self.optimizer.state_dict(),
            "rng": {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": _numpy_rng_state(),
                    "cuda": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else None},
            "batch_fingerprint": self.fingerprint,
        }
        save_checkpoint(self.last_path, self.model, self.tokenizer, self.max_length, state, self.domains)

    def save_best(self, step: int, valid_chrf: float, **details: int) -> None:
        """best.pt: weights only (small), with the summary `serve` reports (step, valid chrF, `details`)
        and the recipe the run applied, if any."""
        self._save_weights(self.best_path, summary={"step": step, "valid_chrf": valid_chrf, **details, **self.recipe})

    def keep_snapshot(self, step: int, keep: int) -> None:
        """Save this validation's weights as `step-NNNNNN.pt` and delete all but the last `keep` snapshots."""
        self._save_weights(self.model_dir / f"step-{step:06d}.pt")
        prune_snapshots(self.model_dir, keep)

    def averaged_snapshots(self) -> tuple[dict[str, torch.Tensor], int] | None:
        """The element-wise mean of the kept snapshots' weights and their count; None with fewer than two."""
        kept = snapshots(self.model_dir)
        return (average_weights(kept), len(kept)) if len(kept) >= 2 else None

    def restore(self, world: Distributed) -> Progress:
        """Load last.pt's weights, optimizer, position and random generators (rank 0's: ranks > 0 are
        reseeded from the seed, their rank and the step, so they draw other dropout masks than an
        uninterrupted run would). best.pt, written by this run, may hold an average that beat the best
        single model last.pt knows of: the returned best chrF is the higher of the two."""
        content = read_checkpoint(self.last_path)
        state = content.get("training_state")
        if not state:
            raise UserError(f"{self.last_path} holds no training state to resume from")
        check_fingerprint(self.last_path, state.get("batch_fingerprint"), self.fingerprint)
        load_weights(self.model, content["weights"], self.last_path)
        try:
            self.optimizer.load_state_dict(state["optimizer"])
        except ValueError as error:
            raise UserError(f"{self.last_path}: optimizer state does not fit params.yaml ({error})") from None
        progress = Progress(**state["progress"])
        torch.set_rng_state(state["rng"]["torch"])
        random.setstate(state["rng"]["python"])
        np.random.set_state(_numpy_rng_state(state["rng"]["numpy"]))
        if state["rng"].get("cuda") and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        if world.rank > 0:  # rank 0's generator was saved; the others only need to differ from it
            torch.manual_seed(torch.initial_seed() + world.rank + progress.step)
        progress.best_chrf = max(progress.best_chrf, recorded_valid_chrf(self.best_path))
        return progress

    def _save_weights(self, path: Path, summary: dict | None = None) -> None:
        save_checkpoint(path, self.model, self.tokenizer, self.max_length, domains=self.domains, summary=summary)


def _numpy_rng_state(saved: list | None = None) -> list | tuple:
    """numpy's global generator state as plain data for a checkpoint (no `saved`), or `saved` back
    as the tuple `np.random.set_state` takes: its 624-word key is an ndarray, which a safe
    (`weights_only`) checkpoint cannot hold."""
    if saved is None:
        name, key, position, has_gauss, cached_gaussian = np.random.get_state()
        return [name, key.tolist(), position, has_gauss, cached_gaussian]
    name, key, position, has_gauss, cached_gaussian = saved
    return name, np.array(key, dtype=np.uint32), position, has_gauss, cached_gaussian
