"""Benchmarks: training throughput on the real encoded train split.

Speed is measured here, not in tests. The machine is noisy, so compare variants as ratios
within one run.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path

import torch

from seq2seq.config import ModelConfig, Params
from seq2seq.data import ParallelData, collate, make_batches
from seq2seq.model import Seq2Seq
from seq2seq.train import autocast, learning_rate, pick_device


def training_throughput(model_config: ModelConfig, params: Params, data: ParallelData, vocab_sizes: tuple[int, int],
                        steps: int, warmup: int) -> float:
    """Target tokens per second over `steps` full training steps (forward, backward, update)."""
    config = params.train
    device = pick_device(config.device)
    torch.manual_seed(config.seed)
    model = Seq2Seq(model_config, *vocab_sizes).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate(config, 1, 1.0))
    batches = make_batches(data.source.lengths, data.target.lengths, config.batch_tokens, config.max_length,
                           config.seed)
    tokens, started = 0, 0.0
    for index in range(warmup + steps):
        if index == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            tokens, started = 0, time.perf_counter()
        batch = collate(data, batches[index % len(batches)]).to(device)
        with autocast(device, config.bf16):
            loss = model(batch.source, batch.source_lengths, batch.target_input, batch.target_output,
                         config.label_smoothing)
        (loss / batch.target_tokens).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip_grad_norm or float("inf"))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        tokens += batch.target_tokens
    if device.type == "cuda":
        torch.cuda.synchronize()
    return tokens / (time.perf_counter() - started)


def bench_train(params: Params, steps: int, warmup: int, naive: bool,
                encoded_dir: Path = Path("data/encoded")) -> Iterator[str]:
    """Yield report lines: the configured model's tokens/s and, with `naive`, the step-by-step decoder's."""
    from seq2seq.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(Path("models/tokenizer"))
    vocab_sizes = (tokenizer.source.get_piece_size(), tokenizer.target.get_piece_size())
    data = ParallelData.open(encoded_dir, "train")
    variants = {"configured": params.model}
    if naive:
        variants["step-by-step (input feeding)"] = dataclasses.replace(params.model, input_feeding=True)
    yield (f"device {pick_device(params.train.device)}, threads {torch.get_num_threads()}, bf16 {params.train.bf16}, "
           f"batch_tokens {params.train.batch_tokens}, {steps} steps after {warmup} warm-up")
    rates = {}
    for name, model_config in variants.items():
        parameters = Seq2Seq(model_config, *vocab_sizes).parameter_count()
        rates[name] = training_throughput(model_config, params, data, vocab_sizes, steps, warmup)
        yield f"{name}: {rates[name]:,.0f} target tokens/s ({parameters / 1e6:.1f}M parameters)"
    if len(rates) == 2:
        configured, naive_rate = rates.values()
        yield f"ratio configured / step-by-step: {configured / naive_rate:.2f}x"
