"""Measurement: the memory of training and of the stages before it (`seq2seq bench memory`, `bench
step`, `bench scale`): resident memory against steps until it levels off, the peak of one step on
the longest batch, and the peaks of prepare, encode and train when the corpus grows.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path

from seq2seq import paths
from seq2seq.bench.training import TrainerRun
from seq2seq.config import Params
from seq2seq.device import autocast, memory_mib, pick_device
from seq2seq.errors import UserError
from seq2seq.training_data import TrainPaths


def bench_memory(params: Params, max_steps: int, every: int, window: int = 500,
                 paths: TrainPaths | None = None) -> Iterator[str]:
    """Yield report lines: this process's resident memory while it takes the trainer's own steps
    (`TrainerRun`: no validation), every `every` steps, until it grew by less than 2% over the last
    `window` steps (a plateau) or for `max_steps`."""
    import os

    if memory_mib() is None:
        raise UserError("bench memory reads /proc/self/status, which this system lacks (Linux only)")
    run = TrainerRun.set_up(params, paths or TrainPaths())
    config = run.config
    yield (f"device {run.device}, bf16 {config.bf16}, batch_tokens {config.batch_tokens}, oneDNN kernel cache "
           f"{os.environ.get('ONEDNN_PRIMITIVE_CACHE_CAPACITY', 'default')} (ONEDNN_PRIMITIVE_CACHE_CAPACITY)")
    resident: dict[int, float] = {}
    tokens, started = 0, time.perf_counter()
    for step, result in enumerate(run.steps(max_steps), start=1):
        tokens += result.tokens
        if step % every:
            continue
        resident[step], peak = memory_mib()
        yield (f"step {step:>5}: {resident[step]:>6,.0f} MiB resident, peak {peak:,.0f} MiB, "
               f"{tokens / (time.perf_counter() - started):,.0f} target tokens/s")
        start = plateau_start(resident, window)
        if start is not None:
            yield f"plateau: {resident[step]:,.0f} MiB at step {step}, {resident[start]:,.0f} MiB at step {start}"
            return
    yield f"no plateau within {max_steps} steps (less than 2% growth over {window} steps)"


def plateau_start(resident: dict[int, float], window: int, growth: float = 0.02) -> int | None:
    """Where a plateau of `resident` (step -> MiB, in step order) starts: the last step at least `window`
    steps before the latest reading, if the latest exceeds that step's reading by at most `growth`;
    None while no reading is that old, or if memory grew more."""
    latest = max(resident)
    earlier = [step for step in resident if step <= latest - window]
    if earlier and resident[latest] <= (1 + growth) * resident[earlier[-1]]:
        return earlier[-1]
    return None


def bench_step_memory(params: Params) -> Iterator[str]:
    """Yield a report line: peak RSS of one training step (forward and backward) on the longest batch
    that `train.batch_tokens` and `train.max_length` allow, with random ids (no data needed)."""
    import json

    config = params.train
    length = config.max_length
    sentences = max(1, config.batch_tokens // (length + 1))  # +1: BOS or EOS
    target_vocab = params.tokenizer.vocab_size if params.tokenizer.joint else params.tokenizer.korean_vocab_size
    vocab_sizes = (params.tokenizer.vocab_size, target_vocab)
    probe = (
        "import json, resource, torch\n"
        "from seq2seq.config import parse_params\nfrom seq2seq.device import autocast, pick_device\n"
        "from seq2seq.model import Seq2Seq\n"
        f"params = parse_params(json.loads({json.dumps(dataclasses.asdict(params))!r}))\n"
        f"B, L, (vs, vt) = {sentences}, {length}, {vocab_sizes}\n"
        "torch.manual_seed(0); device = pick_device(params.train.device)\n"
        "model = Seq2Seq(params.model, vs, vt).to(device).train()\n"
        "source, lengths = torch.randint(4, vs, (B, L), device=device), torch.full((B,), L)\n"
        "target_input, target_output = (torch.randint(4, vt, (B, L), device=device) for _ in range(2))\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
        "with autocast(device, params.train.bf16):\n"
        "    loss = model(source, lengths, target_input, target_output)\n"
        "loss.backward()"
    )
    ready, peak = (kib / 1024 for kib in _peak_rss_lines(probe)[-2:])
    model = params.model
    bf16 = not isinstance(autocast(pick_device(config.device), config.bf16), contextlib.nullcontext)
    yield (f"one training step, {sentences} x {length} tokens both sides, {model.attention} attention, "
           f"decoder {model.decoder_hidden_size} units, bf16 autocast {'on' if bf16 else 'off'}: "
           f"peak RSS {peak:,.0f} MiB ({peak - ready:,.0f} MiB above the {ready:,.0f} MiB of model and batch)")


def bench_scale(params: Params, copies: int, steps: int, raw_dir: Path = paths.RAW,
                tokenizer_dir: Path = paths.TOKENIZER) -> Iterator[str]:
    """Yield report lines: peak RSS of prepare, encode and `steps` training steps at 1x and `copies`x data."""
    import json
    import tempfile

    import yaml

    sources = list(dict.fromkeys(params.prepare.valid_sources + params.prepare.sources))
    raw_params = dataclasses.asdict(params)
    raw_params["train"].update(max_steps=steps, valid_every=steps, valid_sentences=16, nproc=1)
    for scale in (1, copies):
        with tempfile.TemporaryDirectory(prefix=f"seq2seq-bench-{scale}x-") as temp:
            work = Path(temp)
            _replicate_corpus(raw_dir, sources, scale, work / "raw")
            (work / "params.yaml").write_text(yaml.safe_dump(raw_params))
            prepare_mib = _peak_rss_mib(
                "from pathlib import Path; from seq2seq.config import load_params; "
                "from seq2seq.prepare import prepare\n"
                f"w = Path({str(work)!r}); prepare(w / 'raw', w / 'data/prepared', w / 'stats.json', "
                "load_params(w / 'params.yaml').prepare)")
            pairs = json.loads((work / "stats.json").read_text())["pairs"]["train"]
            encode_mib = _peak_rss_mib(
                "from pathlib import Path; from seq2seq.data import encode_splits; "
                "from seq2seq.tokenizer import load_tokenizer\n"
                f"w = Path({str(work)!r}); encode_splits(w / 'data/prepared', "
                f"load_tokenizer(Path({str(tokenizer_dir.resolve())!r})), w / 'data/encoded')")
            (work / "models").mkdir()
            (work / paths.TOKENIZER).symlink_to(tokenizer_dir.resolve())
            train_mib = _peak_rss_mib(
                "import os; from pathlib import Path; from seq2seq.config import load_params; "
                "from seq2seq.train import train\n"
                f"os.chdir({str(work)!r}); train(load_params('params.yaml'))")
            yield (f"{scale:>3}x ({pairs:,} train pairs): peak RSS prepare {prepare_mib:,.0f} MiB, "
                   f"encode {encode_mib:,.0f} MiB, train ({steps} steps) {train_mib:,.0f} MiB")


def _replicate_corpus(raw_dir: Path, sources: list[str], copies: int, out_dir: Path) -> None:
    """Write `copies` copies of each source; copy k > 0 marks every line with ` #k` so that the
    duplicate filter keeps it (the point is more data, not more duplicates)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for source in sources:
        for lang in ("en", "ko"):
            with (raw_dir / f"{source}.{lang}").open(encoding="utf-8") as original:
                lines = original.read().splitlines()
            with (out_dir / f"{source}.{lang}").open("w", encoding="utf-8") as copy:
                for k in range(copies):
                    mark = f" #{k}" if k else ""
                    copy.writelines(f"{line}{mark}\n" if line.strip() else "\n" for line in lines)


def _peak_rss_mib(code: str) -> float:
    """Run Python `code` in a fresh process; return its peak resident memory in MiB."""
    return _peak_rss_lines(code)[-1] / 1024


def _peak_rss_lines(code: str) -> list[int]:
    """Run Python `code` in a fresh process; return the integers it printed, one a line, followed by
    its peak resident memory in KiB."""
    import subprocess
    import sys

    probe = f"{code}\nimport resource\nprint(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    if result.returncode != 0:
        last_line = (result.stderr.strip().splitlines() or [f"exit code {result.returncode}"])[-1]
        raise RuntimeError(f"benchmark subprocess failed: {last_line}")
    return [int(line) for line in result.stdout.strip().splitlines() if line.strip().isdigit()]
