"""Measurement: translation speed and quality by decoding setting (`seq2seq bench translate`, `bench
decode`) and with sentence splitting on and off (`bench paragraphs`), through the product's own
`Translator`; how soon `seq2seq translate` answers a line on standard input (`bench stream`); what
n-best lists with scores and teacher-forced scoring cost against plain translation (`bench scoring`).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import torch

from seq2seq.config import EvaluateConfig


def bench_translate(model_path: Path, sources_path: Path, beam_sizes: list[int], batch_size: int,
                    limit: int, quantize: bool = False) -> Iterator[str]:
    """Yield report lines: translation throughput in sentences/s for each beam size (and, with
    `quantize`, also with int8 dynamic quantization)."""
    from seq2seq.translate import Translator

    sentences = sources_path.read_text(encoding="utf-8").splitlines()[:limit]
    yield f"{len(sentences)} sentences of {sources_path}, batch size {batch_size}, threads {torch.get_num_threads()}"
    for beam_size in beam_sizes:
        for quantized in (False, True) if quantize else (False,):
            translator = Translator(model_path, beam_size=beam_size, batch_size=batch_size, quantize=quantized)
            started = time.perf_counter()
            translator.translate(sentences)
            seconds = time.perf_counter() - started
            name = f"beam {beam_size}{' int8' if quantized else ''}"
            yield f"{name}: {len(sentences) / seconds:,.1f} sentences/s ({seconds:.1f} s)"


def bench_scoring(model_path: Path, prepared_dir: Path, split: str, limit: int, beam_size: int, n_best: int,
                  batch_size: int, rounds: int) -> Iterator[str]:
    """Yield a Markdown table: sentences/s of plain translation (beam `beam_size`), of translation
    with `n_best` candidates and scores written as JSON Lines, and of `score` on the split's
    (English, reference) pairs, each the best of `rounds` interleaved runs in this one process (on a
    shared CPU, compare the ratios, not the rates), one sentence a line (no splitting)."""
    from seq2seq.formats import Shown, output_lines
    from seq2seq.translate import Translator

    english, korean = ((prepared_dir / f"{split}.{lang}").read_text(encoding="utf-8").splitlines()[:limit]
                       for lang in ("en", "ko"))
    translator = Translator(model_path, beam_size=beam_size, batch_size=batch_size, split_sentences=False)
    shown = Shown(scores=True, n_best=n_best)
    runs = {
        f"translate, beam {beam_size}": lambda: translator.translate(english),
        f"translate, beam {beam_size}, n-best {n_best} + scores (JSON Lines)":
            lambda: list(output_lines(translator.translate_detailed(english, n_best=n_best), shown, as_json=True)),
        "score the reference pairs (teacher-forced)": lambda: translator.score(english, korean),
    }
    translator.score(english[:8], korean[:8])  # warm
    seconds = {name: float("inf") for name in runs}
    cpu_seconds = dict(seconds)
    for _ in range(rounds):
        for name, work in runs.items():
            started, cpu_started = time.perf_counter(), time.process_time()
            work()
            seconds[name] = min(seconds[name], time.perf_counter() - started)
            cpu_seconds[name] = min(cpu_seconds[name], time.process_time() - cpu_started)
    yield (f"{len(english)} sentences of {prepared_dir}/{split}, model {model_path}, batch size {batch_size}, "
           f"threads {torch.get_num_threads()}, best of {rounds} interleaved rounds (CPU seconds: this "
           "process's, which a busy machine's other work does not add to)")
    yield "| run | sentences/s | seconds | CPU seconds | CPU time against plain translation |"
    yield "|---|---:|---:|---:|---:|"
    plain = cpu_seconds[next(iter(runs))]
    for name, taken in seconds.items():
        yield (f"| {name} | {len(english) / taken:.1f} | {taken:.1f} | {cpu_seconds[name]:.1f} | "
               f"{cpu_seconds[name] / plain:.2f}x |")


def bench_decode(model_path: Path, prepared_dir: Path, split: str, limit: int, beam_sizes: list[int],
                 length_penalties: list[float], ngram_sizes: list[int], config: EvaluateConfig) -> Iterator[str]:
    """Yield one report line per decoding setting: chrF, BLEU and output/reference length ratio on
    the first `limit` sentences of `split`. Beam 1 ignores the length penalty, so it is tried once."""
    import itertools

    from seq2seq.evaluate import score
    from seq2seq.translate import Translator

    sources, references = ((prepared_dir / f"{split}.{lang}").read_text(encoding="utf-8").splitlines()[:limit]
                           for lang in ("en", "ko"))
    yield f"{len(sources)} sentences of {prepared_dir}/{split}, model {model_path}"
    translator = Translator(model_path, batch_size=config.batch_size, max_output_ratio=config.max_output_ratio,
                            split_sentences=False)  # line by line, as validation and evaluate score
    for beam_size, length_penalty, ngram_size in itertools.product(beam_sizes, length_penalties, ngram_sizes):
        if beam_size == 1 and length_penalty != length_penalties[0]:
            continue
        translator.beam_size, translator.length_penalty = beam_size, length_penalty
        translator.no_repeat_ngram_size = ngram_size
        started = time.perf_counter()
        outputs = translator.translate(sources)
        seconds = time.perf_counter() - started
        scores = score(outputs, references)[0]
        ratio = sum(map(len, outputs)) / max(sum(map(len, references)), 1)
        penalty = "-" if beam_size == 1 else f"{length_penalty:.1f}"
        yield (f"beam {beam_size} length_penalty {penalty} no_repeat_ngram {ngram_size}: chrF {scores['chrf']:.2f} "
               f"BLEU {scores['bleu']:.2f} length ratio {ratio:.2f} ({seconds:.0f} s)")


def bench_paragraphs(model_path: Path, prepared_dir: Path, limit: int, params_path: Path) -> Iterator[str]:
    """Yield a Markdown table: chrF and BLEU of translating paragraphs with sentence splitting on and
    off, and of the paragraphs' lines translated one by one and joined, with the decoding settings of
    `params_path`. A paragraph is 3 consecutive lines of the first `limit` of the valid split
    (FLORES-200 dev in the pipeline) joined by a space, and so is its reference."""
    from seq2seq.evaluate import score
    from seq2seq.translate import Translator

    english, korean = ((prepared_dir / f"valid.{lang}").read_text(encoding="utf-8").splitlines()[:limit]
                       for lang in ("en", "ko"))
    count = len(english) // 3 * 3

    def paragraphs(lines: list[str]) -> list[str]:
        return [" ".join(lines[start : start + 3]) for start in range(0, count, 3)]

    references = paragraphs(korean)
    yield f"{len(references)} paragraphs of 3 lines of {prepared_dir}/valid, model {model_path}"
    yield "| input | splitting | chrF | BLEU | seconds |"
    yield "|---|---|---:|---:|---:|"
    translator = Translator(model_path, params_path=params_path)
    for split in (False, True):
        translator.split_sentences = split
        started = time.perf_counter()
        scores = score(translator.translate(paragraphs(english)), references, ("chrf", "bleu"))[0]
        yield (f"| paragraphs | {'on' if split else 'off'} | {scores['chrf']:.2f} | {scores['bleu']:.2f} | "
               f"{time.perf_counter() - started:.0f} |")
    translator.split_sentences = False
    scores = score(paragraphs(translator.translate(english[:count])), references, ("chrf", "bleu"))[0]
    yield f"| the lines one by one, joined | - | {scores['chrf']:.2f} | {scores['bleu']:.2f} | |"


def _translate_process(model_path: Path) -> subprocess.Popen:
    """`seq2seq translate` reading standard input, its pipes open (text)."""
    command = [sys.executable, "-m", "seq2seq", "translate", "--model", str(model_path)]
    return subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def slow_input_latencies(model_path: Path, lines: list[str], gap: float, load_seconds: float) -> list[float]:
    """Seconds from writing each line to `seq2seq translate` to reading its translation, one line
    every `gap` seconds, the first after `load_seconds` (as a person starts the command, then types)."""
    process = _translate_process(model_path)
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


def fast_input_rate(model_path: Path, lines: list[str]) -> float:
    """Sentences/s of `seq2seq translate` given `lines` all at once, model loading excluded (timed
    from the first line's translation)."""
    process = _translate_process(model_path)
    process.stdin.write(lines[0] + "\n")
    process.stdin.flush()
    process.stdout.readline()  # loaded and warm
    started = time.perf_counter()
    process.stdin.write("".join(line + "\n" for line in lines))
    process.stdin.close()
    outputs = process.stdout.read().splitlines()
    seconds = time.perf_counter() - started
    if process.wait() != 0 or len(outputs) != len(lines):
        raise RuntimeError(f"seq2seq translate gave {len(outputs)} lines for {len(lines)} (exit {process.returncode})")
    return len(lines) / seconds


def bench_stream(model_path: Path, sources_path: Path, gap: float, slow_lines: int, file_lines: int,
                 load_seconds: float) -> Iterator[str]:
    """Yield report lines: slow input (a line every `gap` s, as typed or piped line by line), how soon
    each line's translation comes out; fast input (a file), sentences/s through the pipe and in one
    `Translator.translate` call (batches as full as they get)."""
    from seq2seq.translate import Translator

    lines = sources_path.read_text(encoding="utf-8").splitlines()
    latencies = slow_input_latencies(model_path, lines[:slow_lines], gap, load_seconds)
    yield (f"slow input, a line every {gap:g} s: first line out {1000 * latencies[0]:.0f} ms after it went in, "
           f"median {1000 * statistics.median(latencies):.0f} ms, max {1000 * max(latencies):.0f} ms "
           f"over {len(latencies)} lines")
    file = lines[:file_lines]
    translator = Translator(model_path)
    translator.translate(file[:8])  # warm
    started = time.perf_counter()
    translator.translate(file)
    in_process = len(file) / (time.perf_counter() - started)
    yield (f"fast input ({len(file)} lines at once): {fast_input_rate(model_path, file):.1f} sentences/s through "
           f"the pipe; {in_process:.1f} in one Translator.translate call")
