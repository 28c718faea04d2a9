"""Measurement: training throughput (target tokens per second) on the real data, and the CPU class
that the figure holds for (`seq2seq bench train`); and `TrainerRun`, the trainer's own set-up and steps
without its reporting, validation and checkpoints, which the training and memory benchmarks time.

The machine is noisy: compare variants as ratios within one run (`--naive`, `--baseline`).
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import torch

from seq2seq import paths
from seq2seq.config import ModelConfig, Params
from seq2seq.device import AVX2_EMULATION, CPU_CLASS_DESCRIPTIONS, machine_description
from seq2seq.errors import UserError
from seq2seq.train import RunSetup, set_up_run
from seq2seq.training_data import TrainPaths
from seq2seq.training_step import StepResult, learning_rate, train_on_batch


class TrainerRun(RunSetup):
    """A training run in one process, set up by the trainer's own `train.set_up_run` (device, seed, this
    machine's steps, the data with weights, tags and back-translated pairs, model, optimizer), without
    its reporting, validation and checkpoints; `steps` then takes the trainer's own steps."""

    @classmethod
    def set_up(cls, params: Params, train_paths: TrainPaths, model_config: ModelConfig | None = None) -> TrainerRun:
        """The run of `params` on the data of `train_paths`, with `model_config` in place of `params.model`."""
        try:
            setup = set_up_run(params, train_paths, model=model_config)
        except FileNotFoundError as missing:
            raise UserError(f"{missing.filename} not found: run `dvc repro encode` first") from None
        setup.model.train()
        return cls(**vars(setup))

    def steps(self, count: int) -> Iterator[StepResult]:
        """Take the trainer's first `count` steps, yielding after each: epoch after epoch, each epoch's
        batches (`TrainingData.epoch_batches`: its weighted sample) trained on with `train_on_batch`
        (word dropout, subword sampling) at the trainer's learning rate for the step."""
        batches = ((epoch, indices) for epoch in itertools.count()
                   for indices in self.data.epoch_batches(self.config, epoch, self.world.world))
        for step, (epoch, indices) in enumerate(itertools.islice(batches, count), start=1):
            yield train_on_batch(self.model, self.optimizer, self.data, epoch, indices,
                                 learning_rate(self.config, step, 1.0), self.world, self.config, self.device)

    def synchronize(self) -> None:
        """Wait for the GPU's queued work, so that a clock read next times it (nothing to wait for on a CPU)."""
        if self.device.type == "cuda":
            torch.cuda.synchronize()


def training_throughput(run: TrainerRun, steps: int, warmup: int) -> float:
    """Target tokens per second over `steps` of `run`'s steps after `warmup` untimed ones."""
    tokens, started = 0, time.perf_counter()
    for done, result in enumerate(run.steps(warmup + steps), start=1):
        if done > warmup:
            tokens += result.tokens
        elif done == warmup:
            run.synchronize()
            started = time.perf_counter()
    run.synchronize()
    return tokens / (time.perf_counter() - started)


def avx2_emulated() -> bool:
    """Whether this process runs under `device.AVX2_EMULATION`."""
    return all(os.environ.get(name) == value for name, value in AVX2_EMULATION.items())


def emulate_avx2() -> None:
    """Restart this command as on an AVX2 CPU (`device.AVX2_EMULATION`), unless it runs so already."""
    if avx2_emulated():
        return
    os.execve(sys.executable, [sys.executable, "-m", "seq2seq", *sys.argv[1:]], {**os.environ, **AVX2_EMULATION})


def cpu_line(device: torch.device) -> str:
    """The CPU model and class, with how the class came about, for the first line of a speed report."""
    machine = machine_description(device)
    name = machine["cpu_class"]
    emulated = " (emulated: AVX2 kernels only)" if avx2_emulated() else ""
    return f"CPU {machine['cpu']}, class {name}{emulated}: {CPU_CLASS_DESCRIPTIONS[name]}"


def baseline_throughput(code_dir: Path, steps: int, warmup: int, encoded_dir: Path, tokenizer_dir: Path) -> float:
    """Target tokens/s of the package in `code_dir` (another checkout, e.g. a `git worktree` of main)
    with its own params.yaml, on this checkout's data, run in a subprocess with this environment."""
    command = [sys.executable, "-m", "seq2seq", "bench", "train", "--params", str(code_dir / "params.yaml"),
               "--steps", str(steps), "--warmup", str(warmup), "--no-naive", "--encoded", str(encoded_dir),
               "--tokenizer", str(tokenizer_dir)]
    result = subprocess.run(command, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(code_dir.resolve())})
    found = re.search(r"configured: ([\d,]+) target tokens/s", result.stdout)
    if result.returncode != 0 or found is None:
        last_line = (result.stderr.strip().splitlines() or [f"exit code {result.returncode}"])[-1]
        raise UserError(f"the baseline in {code_dir} failed: {last_line}")
    return float(found[1].replace(",", ""))


def bench_train(params: Params, steps: int, warmup: int, naive: bool, encoded_dir: Path = paths.ENCODED,
                tokenizer_dir: Path = paths.TOKENIZER, baseline_dir: Path | None = None) -> Iterator[str]:
    """Yield report lines: the configured model's tokens/s and, with `naive`, the step-by-step
    decoder's; with `baseline_dir`, first that checkout's tokens/s, and the ratio. The data is the train
    stage's: `encoded_dir` and `tokenizer_dir`, and the prepared data's source names (for weights and
    tags) and back-translated pairs where the pipeline keeps them."""
    if baseline_dir is not None and not (baseline_dir / "seq2seq" / "__init__.py").exists():
        raise UserError(f"{baseline_dir} holds no seq2seq package (pass a checkout, e.g. `git worktree add DIR main`)")

    train_paths = TrainPaths(encoded_dir=encoded_dir, tokenizer_dir=tokenizer_dir)
    variants = {"configured": params.model}
    if naive:
        variants["step-by-step (input feeding)"] = dataclasses.replace(params.model, input_feeding=True)
    rates = {}
    for name, model_config in variants.items():
        run = TrainerRun.set_up(params, train_paths, model_config)
        if not rates:
            yield cpu_line(run.device)
            if baseline_dir is not None:
                before = baseline_throughput(baseline_dir, steps, warmup, encoded_dir, tokenizer_dir)
                yield f"baseline ({baseline_dir}, its params.yaml): {before:,.0f} target tokens/s"
            vocab_sizes = (run.data.source_vocab_size, run.data.tokenizer.target.get_piece_size())
            yield (f"device {run.device}, threads {torch.get_num_threads()}, bf16 {run.config.bf16}, batch_tokens "
                   f"{run.config.batch_tokens}, vocabularies {vocab_sizes}, {steps} steps after {warmup} warm-up")
        rates[name] = training_throughput(run, steps, warmup)
        yield f"{name}: {rates[name]:,.0f} target tokens/s ({run.model.parameter_count() / 1e6:.1f}M parameters)"
    if len(rates) == 2:
        configured, naive_rate = rates.values()
        yield f"ratio configured / step-by-step: {configured / naive_rate:.2f}x"
    if baseline_dir is not None:
        yield f"ratio configured / baseline: {rates['configured'] / before:.2f}x"
