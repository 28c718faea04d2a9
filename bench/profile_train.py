"""Where a training step's time goes: milliseconds per step for each part of the model.

    python bench/profile_train.py [--params params.yaml] [--steps 30]

Each part runs forward and backward on its own, on the train stage's own batches, with its
inputs detached from the rest: the encoder, the decoder RNN, attention with the combine layer,
the output layer with the loss, and gradient clipping with the optimizer step. A whole step is
timed separately; it is a little more than the sum (embeddings, the bridge, bookkeeping).

It uses only interfaces that the package has had since before the encoder ran padded, so the
same script profiles an older checkout too: `PYTHONPATH=/tmp/before python bench/profile_train.py
--params /tmp/before/params.yaml` (with `git worktree add /tmp/before <commit>`). For the AVX2
class on a newer CPU, set `ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2
MKL_ENABLE_INSTRUCTIONS=AVX2` first (`seq2seq.device.AVX2_EMULATION`).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F

from seq2seq.config import load_params
from seq2seq.data import ParallelData, collate, make_batches
from seq2seq.device import autocast
from seq2seq.model import Seq2Seq
from seq2seq.tokenizer import PAD_ID, load_tokenizer

try:
    from seq2seq.training_step import make_optimizer
except ImportError:  # a checkout from before train.py was split
    from seq2seq.train import make_optimizer

PARTS = ["encoder", "decoder RNN", "attention + combine", "output layer + loss", "clipping + Adam"]


def profile(params_path: Path, steps: int, warmup: int, encoded: Path, tokenizer_dir: Path) -> None:
    params = load_params(params_path)
    config = params.train
    tokenizer = load_tokenizer(tokenizer_dir)
    data = ParallelData.open(encoded, "train")
    torch.manual_seed(config.seed)
    model = Seq2Seq(params.model, tokenizer.source.get_piece_size(), tokenizer.target.get_piece_size()).train()
    optimizer = make_optimizer(model, config)
    batches = make_batches(data.source.lengths, data.target.lengths, config.batch_tokens, config.max_length,
                           config.seed)
    batches = [collate(data, batches[index]) for index in range(warmup + steps)]
    precision = autocast(torch.device("cpu"), config.bf16)
    seconds = dict.fromkeys(PARTS, 0.0)

    @contextmanager
    def timed(part: str, counted: bool) -> Iterator[None]:
        started = time.perf_counter()
        with precision:
            yield
        if counted:
            seconds[part] += time.perf_counter() - started

    def optimizer_step() -> None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    encoder, decoder = model.encoder, model.decoder
    for index, batch in enumerate(batches):
        counted = index >= warmup
        with timed("encoder", counted):
            outputs, final = encoder(batch.source, batch.source_lengths)
            finals = final if isinstance(final, tuple) else (final,)  # an LSTM's is a (hidden, cell) pair
            (outputs.float().sum() + sum(part.float().sum() for part in finals)).backward()
        with precision, torch.no_grad():
            final = tuple(part.detach() for part in finals) if isinstance(final, tuple) else final.detach()
            memory = decoder.memory(outputs.detach(), batch.source != PAD_ID)
            state = decoder.initial_state(final)
            embedded = decoder.position_index(decoder.embedding(batch.target_input), 0, memory.lengths)
        with timed("decoder RNN", counted):
            queries, _ = decoder.rnn(embedded.requires_grad_(), state.hidden)
            queries.float().sum().backward()
        with timed("attention + combine", counted):
            attentional, _ = decoder._attend(queries.detach().requires_grad_(), memory)
            attentional.float().sum().backward()
        real = batch.target_output != PAD_ID
        with timed("output layer + loss", counted):
            logits = decoder.logits(attentional.detach().requires_grad_()[real])
            F.cross_entropy(logits.float(), batch.target_output[real], label_smoothing=config.label_smoothing,
                            reduction="sum").backward()
        with timed("clipping + Adam", counted):
            optimizer_step()

    tokens, whole = 0, 0.0
    for index, batch in enumerate(batches):
        started = time.perf_counter()
        with precision:
            loss = model(batch.source, batch.source_lengths, batch.target_input, batch.target_output,
                         config.label_smoothing)
        (loss / batch.target_tokens).backward()
        optimizer_step()
        if index >= warmup:
            whole += time.perf_counter() - started
            tokens += batch.target_tokens

    total = sum(seconds.values())
    print(f"threads {torch.get_num_threads()}, cpu capability {torch.backends.cpu.get_cpu_capability()}, "
          f"{steps} steps after {warmup} warm-up, {tokens / steps:,.0f} target tokens a step")
    print("| part | ms a step | share |\n|---|---:|---:|")
    for part, value in seconds.items():
        print(f"| {part} | {1000 * value / steps:.0f} | {100 * value / total:.0f}% |")
    print(f"| sum of the parts | {1000 * total / steps:.0f} | |")
    print(f"| whole step | {1000 * whole / steps:.0f} | {tokens / whole:,.0f} target tokens/s |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--encoded", type=Path, default=Path("data/encoded"))
    parser.add_argument("--tokenizer", type=Path, default=Path("models/tokenizer"))
    arguments = parser.parse_args()
    profile(arguments.params, arguments.steps, arguments.warmup, arguments.encoded, arguments.tokenizer)


if __name__ == "__main__":
    main()
