"""Streaming standard input: how soon a line comes out of `seq2seq translate`, and a file's speed.

1. Slow input (as a person typing, or a pipe fed line by line): one line every --gap seconds; the
   time from writing each line to reading its translation.
2. Fast input (a file): all lines at once; sentences/s.

Run from the repository root after `dvc repro` (uses data/prepared/test.en):

    .venv/bin/python bench/stream_latency.py [--model models/model/best.pt]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path


def translate_command(model: Path) -> list[str]:
    return [sys.executable, "-m", "seq2seq", "translate", "--model", str(model)]


def slow_input(model: Path, lines: list[str], gap: float, load_seconds: float) -> list[float]:
    """Seconds from writing each line to reading its translation, one line every `gap` seconds,
    the first after `load_seconds` (as a person starts the command, then types)."""
    process = subprocess.Popen(translate_command(model), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    time.sleep(load_seconds)
    latencies = []
    for line in lines:
        written = time.perf_counter()
        process.stdin.write(line + "\n")
        process.stdin.flush()
        process.stdout.readline()
        latencies.append(time.perf_counter() - written)
        time.sleep(gap)
    process.stdin.close()
    process.wait()
    return latencies


def in_process(model: Path, lines: list[str]) -> float:
    """Sentences/s of one `Translator.translate` call on all `lines`: batches as full as they get."""
    from seq2seq import Translator

    translator = Translator(model)
    translator.translate(lines[:8])
    started = time.perf_counter()
    translator.translate(lines)
    return len(lines) / (time.perf_counter() - started)


def fast_input(model: Path, lines: list[str]) -> float:
    """Sentences/s for `lines` given all at once, model loading excluded (timed from the first output)."""
    process = subprocess.Popen(translate_command(model), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    process.stdin.write(lines[0] + "\n")
    process.stdin.flush()
    process.stdout.readline()  # loaded and warm
    started = time.perf_counter()
    process.stdin.write("".join(line + "\n" for line in lines))
    process.stdin.close()
    outputs = process.stdout.read().splitlines()
    seconds = time.perf_counter() - started
    process.wait()
    assert len(outputs) == len(lines)
    return len(lines) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/model/best.pt"))
    parser.add_argument("--gap", type=float, default=1.0, help="seconds between slow lines")
    parser.add_argument("--slow-lines", type=int, default=10)
    parser.add_argument("--file-lines", type=int, default=1120)
    parser.add_argument("--load-seconds", type=float, default=15, help="wait before the first slow line")
    args = parser.parse_args()
    lines = Path("data/prepared/test.en").read_text(encoding="utf-8").splitlines()
    latencies = slow_input(args.model, lines[: args.slow_lines], args.gap, args.load_seconds)
    print(f"slow input, a line every {args.gap:g} s: first line out {1000 * latencies[0]:.0f} ms after it went in, "
          f"median {1000 * statistics.median(latencies):.0f} ms, max {1000 * max(latencies):.0f} ms "
          f"over {len(latencies)} lines")
    file_lines = lines[: args.file_lines]
    print(f"fast input ({len(file_lines)} lines at once): {fast_input(args.model, file_lines):.1f} sentences/s "
          f"through the pipe; {in_process(args.model, file_lines):.1f} in one Translator.translate call")


if __name__ == "__main__":
    main()
