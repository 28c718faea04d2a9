"""What a training run tells the user while it runs: the progress bar on stderr and the dvclive log
(validation curves, and a summary in `dvclive/metrics.json`). Rank 0 alone reports."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from seq2seq.device import machine_description, memory_mib
from seq2seq.model import Seq2Seq
from seq2seq.training_budget import StepBudget
from seq2seq.training_checkpoints import Progress
from seq2seq.training_process import Distributed


class Reporter:
    """The progress bar (rank 0 only) and the dvclive log and summary (rank 0 only: `live` is None elsewhere)."""

    def __init__(self, live_dir: Path, budget: StepBudget, world: Distributed, resume: bool, model: Seq2Seq,
                 device: torch.device, step: int) -> None:
        self.live = None
        if world.is_main:
            from dvclive import Live

            self.live = Live(str(live_dir), resume=resume, dvcyaml=None, save_dvc_exp=False, report=None)
            self.live.log_param("parameters", model.parameter_count())
            self.live.summary["machine"] = machine_description(device)  # best.pt's bytes differ between CPU models
            self.live.summary["max_steps"] = budget.steps  # with max_steps auto: depends on the machine
            self.live.summary["max_steps_from"] = budget.source
        self.bar = tqdm(total=budget.steps, initial=step, unit="step", disable=not world.is_main,
                        dynamic_ncols=True, desc="train", mininterval=1 if sys.stderr.isatty() else 30)
        self.interval_tokens, self.interval_start = 0.0, time.perf_counter()
        if world.is_main:
            self.write(budget.line)

    def step(self, progress: Progress, loss_sum: torch.Tensor, tokens: int, all_tokens: float, lr: float) -> None:
        """Advance the bar; every 10 steps show the loss per token, throughput, learning rate and epoch."""
        self.interval_tokens += all_tokens
        self.bar.update(1)
        if progress.step % 10 == 0:
            rate = self.interval_tokens / (time.perf_counter() - self.interval_start)
            self.bar.set_postfix(loss=f"{loss_sum.item() / max(tokens, 1):.3f}", tok_s=f"{rate:.0f}",
                                 lr=f"{lr:.2e}", epoch=progress.epoch)
            self.interval_tokens, self.interval_start = 0, time.perf_counter()

    def validation(self, progress: Progress, scores: dict[str, float], minutes: float) -> None:
        """Log one validation's scores (rank 0)."""
        self.live.step = progress.step
        for name, value in {**scores, "minutes": minutes, "target_tokens": progress.target_tokens}.items():
            self.live.log_metric(f"valid/{name}", value)
        self.live.summary.update({"best_valid_chrf": progress.best_chrf, "best_step": progress.best_step,
                                  "minutes": round(minutes, 2)})
        self.live.next_step()
        self.write(f"step {progress.step}: valid loss {scores['loss']:.3f} ppl {scores['perplexity']:.1f} "
                   f"chrF {scores['chrf']:.1f} ({minutes:.1f} min)")

    def average(self, snapshots: int, averaged_chrf: float, best_single_chrf: float) -> None:
        """Log the valid chrF of the snapshots' average beside the best single model's (rank 0)."""
        self.live.summary["averaged_valid_chrf"] = averaged_chrf
        self.live.summary["best_valid_chrf"] = max(averaged_chrf, best_single_chrf)  # the better one is best.pt
        self.write(f"average of {snapshots} snapshots: valid chrF {averaged_chrf:.1f} "
                   f"(best single: {best_single_chrf:.1f})")

    def write(self, message: str) -> None:
        self.bar.write(message, file=sys.stderr)

    def close(self) -> None:
        self.bar.close()
        if self.live is not None:
            memory = memory_mib()
            if memory is not None:  # of this process: on resume, of the run since then
                self.live.summary["peak_memory_mib"] = round(memory[1])
            self.live.end()
