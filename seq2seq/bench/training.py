"""Measurement: training throughput (target tokens per second) on the real encoded data, and the
CPU class that the figure holds for (`seq2seq bench train`).

The machine is noisy: compare variants as ratios within one run (`--naive`, `--baseline`).
"""

from __future__ import annotations

import dataclasses
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
from seq2seq.data import ParallelData, collate, make_batches
from seq2seq.device import AVX2_EMULATION, CPU_CLASS_DESCRIPTIONS, machine_description, pick_device
from seq2seq.errors import UserError
from seq2seq.model import Seq2Seq
from seq2seq.training_process import Distributed
from seq2seq.training_step import learning_rate, make_optimizer, train_step


def training_throughput(model_config: ModelConfig, params: Params, data: ParallelData, vocab_sizes: tuple[int, int],
                        steps: int, warmup: int) -> float:
    """Target tokens per second over `steps` full training steps (forward, backward, update)."""
    config = params.train
    device = pick_device(config.device)
    torch.manual_seed(config.seed)
    model = Seq2Seq(model_config, *vocab_sizes).to(device).train()
    optimizer = make_optimizer(model, config)
    world = Distributed(device)  # a single process
    batches = make_batches(data.source.lengths, data.target.lengths, config.batch_tokens, config.max_length,
                           config.seed)
    tokens, started = 0, 0.0
    for index in range(warmup + steps):
        if index == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            tokens, started = 0, time.perf_counter()
        batch = collate(data, batches[index % len(batches)]).to(device)
        tokens += train_step(model, optimizer, batch, learning_rate(config, 1000, 1.0), world, config, device)[1]
    if device.type == "cuda":
        torch.cuda.synchronize()
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
    decoder's; with `baseline_dir`, first that checkout's tokens/s, and the ratio."""
    from seq2seq.tokenizer import load_tokenizer

    if baseline_dir is not None and not (baseline_dir / "seq2seq" / "__init__.py").exists():
        raise UserError(f"{baseline_dir} holds no seq2seq package (pass a checkout, e.g. `git worktree add DIR main`)")

    tokenizer = load_tokenizer(tokenizer_dir)
    vocab_sizes = (tokenizer.source.get_piece_size(), tokenizer.target.get_piece_size())
    data = ParallelData.open(encoded_dir, "train")
    variants = {"configured": params.model}
    if naive:
        variants["step-by-step (input feeding)"] = dataclasses.replace(params.model, input_feeding=True)
    config = params.train
    yield cpu_line(pick_device(config.device))
    if baseline_dir is not None:
        before = baseline_throughput(baseline_dir, steps, warmup, encoded_dir, tokenizer_dir)
        yield f"baseline ({baseline_dir}, its params.yaml): {before:,.0f} target tokens/s"
    yield (f"device {pick_device(config.device)}, threads {torch.get_num_threads()}, bf16 {config.bf16}, "
           f"batch_tokens {config.batch_tokens}, vocabularies {vocab_sizes}, {steps} steps after {warmup} warm-up")
    rates = {}
    for name, model_config in variants.items():
        parameters = Seq2Seq(model_config, *vocab_sizes).parameter_count()
        rates[name] = training_throughput(model_config, params, data, vocab_sizes, steps, warmup)
        yield f"{name}: {rates[name]:,.0f} target tokens/s ({parameters / 1e6:.1f}M parameters)"
    if len(rates) == 2:
        configured, naive_rate = rates.values()
        yield f"ratio configured / step-by-step: {configured / naive_rate:.2f}x"
    if baseline_dir is not None:
        yield f"ratio configured / baseline: {rates['configured'] / before:.2f}x"
