"""`seq2seq bench ...`: the command group of the benchmarks, thin as the rest of the CLI; each command
calls one function of this subpackage's modules, imported inside it so that `seq2seq --help` starts
without torch."""

from __future__ import annotations

from pathlib import Path

import click

from seq2seq import paths
from seq2seq.cli import PARAMS
from seq2seq.errors import UserError


def _existing_sources(_context: click.Context, _parameter: click.Parameter, path: Path) -> Path:
    if not path.exists():
        raise UserError(f"{path} not found: run `dvc repro prepare` or pass --sources")
    return path


def _require_prepared(split: str) -> None:
    """`UserError` unless the prepare stage has written `split`'s English."""
    path = paths.PREPARED / f"{split}.en"
    if not path.exists():
        raise UserError(f"{path} not found: run `dvc repro prepare`")


BENCH_MODEL = click.option("--model", "model_path", type=click.Path(path_type=Path), default=paths.BEST_MODEL,
                           show_default=True, help="The checkpoint to measure.")
BENCH_SOURCES = click.option("--sources", "sources_path", type=click.Path(path_type=Path),
                             default=paths.PREPARED / "test.en", show_default=True, callback=_existing_sources,
                             help="English sentences, one per line.")


@click.group()
def bench() -> None:
    """Benchmarks on the real prepared data (run `dvc repro encode` first)."""


@bench.command("train")
@PARAMS
@click.option("--steps", type=click.IntRange(min=1), default=20, show_default=True, help="Timed steps.")
@click.option("--warmup", type=click.IntRange(min=0), default=3, show_default=True, help="Untimed first steps.")
@click.option("--naive/--no-naive", default=True, show_default=True,
              help="Also time the step-by-step (input-feeding) decoder for comparison.")
@click.option("--encoded", "encoded_dir", type=click.Path(path_type=Path), default=paths.ENCODED, show_default=True,
              help="The encoded data to time steps on (the encode stage's output).")
@click.option("--tokenizer", "tokenizer_dir", type=click.Path(path_type=Path), default=paths.TOKENIZER,
              show_default=True, help="The tokenizer folder (vocabulary sizes).")
@click.option("--emulate-avx2", is_flag=True,
              help="Run as on a CPU without AVX-512 or native bf16 (class avx2, float32), on a newer x86 CPU.")
@click.option("--baseline", "baseline_dir", type=click.Path(path_type=Path, file_okay=False, exists=True),
              help="Also time the code and params.yaml of this checkout (e.g. `git worktree add /tmp/before main`).")
def bench_train(params_path: Path, steps: int, warmup: int, naive: bool, encoded_dir: Path,
                tokenizer_dir: Path, emulate_avx2: bool, baseline_dir: Path | None) -> None:
    """Steady-state training throughput in target tokens per second, and the CPU class it holds for."""
    from seq2seq.bench.training import bench_train as run
    from seq2seq.bench.training import emulate_avx2 as restart_emulated
    from seq2seq.config import load_params

    if emulate_avx2:
        restart_emulated()  # before any torch work: the libraries read their limits when they start
    for line in run(load_params(params_path), steps, warmup, naive, encoded_dir, tokenizer_dir, baseline_dir):
        click.echo(line)


@bench.command("memory")
@PARAMS
@click.option("--max-steps", type=click.IntRange(min=1), default=3000, show_default=True,
              help="Stop here if memory has not levelled off before.")
@click.option("--every", type=click.IntRange(min=1), default=50, show_default=True, help="Report every N steps.")
@click.option("--window", type=click.IntRange(min=1), default=500, show_default=True,
              help="A plateau: less than 2% growth over this many steps.")
def bench_memory(params_path: Path, max_steps: int, every: int, window: int) -> None:
    """Resident memory against training steps, until it levels off (needs `dvc repro encode`)."""
    from seq2seq.bench.memory import bench_memory as run
    from seq2seq.config import load_params

    for line in run(load_params(params_path), max_steps, every, window):
        click.echo(line)


@bench.command("scale")
@PARAMS
@click.option("--copies", type=click.IntRange(min=2), default=10, show_default=True,
              help="How many times to replicate the corpus for the large run.")
@click.option("--steps", type=click.IntRange(min=1), default=20, show_default=True, help="Training steps to run.")
def bench_scale(params_path: Path, copies: int, steps: int) -> None:
    """Peak memory of prepare, encode and training at 1x and COPIES x the corpus (needs `dvc repro tokenizer`)."""
    from seq2seq.bench.memory import bench_scale as run
    from seq2seq.config import load_params

    for line in run(load_params(params_path), copies, steps):
        click.echo(line)


@bench.command("step")
@PARAMS
def bench_step(params_path: Path) -> None:
    """Peak memory of one training step on the longest batch the params allow (random ids, no data needed)."""
    from seq2seq.bench.memory import bench_step_memory as run
    from seq2seq.config import load_params

    for line in run(load_params(params_path)):
        click.echo(line)


@bench.command("decode")
@PARAMS
@BENCH_MODEL
@click.option("--split", default="valid", show_default=True, help="Prepared split to score (data/prepared/SPLIT.*).")
@click.option("--limit", type=click.IntRange(min=1), default=400, show_default=True, help="First N sentences.")
@click.option("--beam", "beam_sizes", type=click.IntRange(min=1), multiple=True, default=[1, 5], show_default=True,
              help="Beam sizes to try (repeat the option for several).")
@click.option("--length-penalty", "length_penalties", type=click.FloatRange(min=0), multiple=True,
              default=[0.6, 1.0, 1.4], show_default=True,
              help="Length penalties to try (repeat the option for several).")
@click.option("--no-repeat-ngram", "ngram_sizes", type=click.IntRange(min=0), multiple=True, default=[0, 3, 4],
              show_default=True, help="n-gram blocking sizes to try (0: none; repeat the option for several).")
def bench_decode(params_path: Path, model_path: Path, split: str, limit: int, beam_sizes: tuple[int, ...],
                 length_penalties: tuple[float, ...], ngram_sizes: tuple[int, ...]) -> None:
    """chrF and length ratio of each decoding setting on a split (tune evaluate's params on valid)."""
    from seq2seq.bench.decoding import bench_decode as run
    from seq2seq.config import decoding_settings

    for line in run(model_path, paths.PREPARED, split, limit, list(beam_sizes), list(length_penalties),
                    list(ngram_sizes), decoding_settings(params_path)):
        click.echo(line)


@bench.command("translate")
@BENCH_MODEL
@BENCH_SOURCES
@click.option("--beam", "beam_sizes", type=click.IntRange(min=1), multiple=True, default=[1, 5], show_default=True,
              help="Beam sizes to time (repeat the option for several).")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True,
              help="Sentences decoded together.")
@click.option("--limit", type=click.IntRange(min=1), default=1000, show_default=True, help="At most this many lines.")
@click.option("--quantize", is_flag=True, help="Also time each beam size with int8 dynamic quantization.")
def bench_translate(model_path: Path, sources_path: Path, beam_sizes: tuple[int, ...], batch_size: int,
                    limit: int, quantize: bool) -> None:
    """Translation throughput in sentences per second, greedy and beam search."""
    from seq2seq.bench.decoding import bench_translate as run

    for line in run(model_path, sources_path, list(beam_sizes), batch_size, limit, quantize):
        click.echo(line)


@bench.command("scoring")
@BENCH_MODEL
@click.option("--split", default="test", show_default=True, help="Prepared split to use (data/prepared/SPLIT.*).")
@click.option("--limit", type=click.IntRange(min=1), default=300, show_default=True, help="At most this many pairs.")
@click.option("--beam", "beam_size", type=click.IntRange(min=2), default=5, show_default=True, help="Beam size.")
@click.option("--n-best", type=click.IntRange(min=2), default=5, show_default=True,
              help="Candidates per sentence in the n-best run (at most the beam size).")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True,
              help="Sentences decoded or scored together.")
@click.option("--rounds", type=click.IntRange(min=1), default=2, show_default=True,
              help="Interleaved runs of each; the best is reported.")
def bench_scoring(model_path: Path, split: str, limit: int, beam_size: int, n_best: int, batch_size: int,
                  rounds: int) -> None:
    """Sentences/s of plain translation, n-best lists with scores, and teacher-forced scoring, in one run."""
    from seq2seq.bench.decoding import bench_scoring as run

    if n_best > beam_size:
        raise UserError(f"--n-best {n_best} is more than --beam {beam_size}")
    _require_prepared(split)
    for line in run(model_path, paths.PREPARED, split, limit, beam_size, n_best, batch_size, rounds):
        click.echo(line)


@bench.command("paragraphs")
@PARAMS
@BENCH_MODEL
@click.option("--limit", type=click.IntRange(min=3), default=999, show_default=True,
              help="First N lines of data/prepared/valid.* (3 lines a paragraph).")
def bench_paragraphs(params_path: Path, model_path: Path, limit: int) -> None:
    """chrF and BLEU of 3-line paragraphs of the valid split, with sentence splitting on and off."""
    from seq2seq.bench.decoding import bench_paragraphs as run

    _require_prepared("valid")
    for line in run(model_path, paths.PREPARED, limit, params_path):
        click.echo(line)


@bench.command("stream")
@BENCH_MODEL
@BENCH_SOURCES
@click.option("--gap", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Seconds between the lines of the slow input.")
@click.option("--slow-lines", type=click.IntRange(min=1), default=10, show_default=True,
              help="Lines fed one by one, --gap apart.")
@click.option("--file-lines", type=click.IntRange(min=1), default=1120, show_default=True,
              help="Lines fed at once, as a file.")
@click.option("--load-seconds", type=click.FloatRange(min=0), default=15, show_default=True,
              help="Wait this long before the first slow line (the model loads meanwhile).")
def bench_stream(model_path: Path, sources_path: Path, gap: float, slow_lines: int, file_lines: int,
                 load_seconds: float) -> None:
    """How soon `seq2seq translate` answers a line on standard input, and its sentences/s on a file."""
    from seq2seq.bench.decoding import bench_stream as run

    for line in run(model_path, sources_path, gap, slow_lines, file_lines, load_seconds):
        click.echo(line)


@bench.command("queue")
@click.argument("sweep_path", type=click.Path(path_type=Path))
@click.option("--dry-run", is_flag=True, help="Only print the dvc commands.")
def bench_queue(sweep_path: Path, dry_run: bool) -> None:
    """Queue each run of a sweep file (e.g. bench/sweeps/recipe.yaml) as a DVC experiment.

    Then `dvc queue start --jobs 1` runs them (one at a time on 2 cores), and `dvc exp show`,
    `dvc metrics diff` and `dvc plots diff` compare them."""
    from seq2seq.bench.sweeps import queue_sweep

    for command in queue_sweep(sweep_path, dry_run):
        click.echo(command)


@bench.command("serve")
@BENCH_MODEL
@BENCH_SOURCES
@click.option("--clients", "client_counts", type=click.IntRange(min=1, max=64), multiple=True, default=[1, 4, 16],
              show_default=True, help="Concurrent clients (repeat the option for several levels).")
@click.option("--requests", "max_requests", type=click.IntRange(min=1), default=400, show_default=True,
              help="At most this many requests per level.")
@click.option("--seconds", "max_seconds", type=click.FloatRange(min=1), default=20, show_default=True,
              help="At most this long per level.")
@click.option("--beam", "beam_size", type=click.IntRange(min=1, max=10), default=5, show_default=True,
              help="Beam size of every request.")
@click.option("--port", type=click.IntRange(min=1, max=65535), default=8765, show_default=True,
              help="Port on 127.0.0.1 for the benchmarked server.")
@click.option("--overload", type=click.FloatRange(min=0), default=0, show_default=True,
              help="Then send requests at this many times the best rate sustained, for --overload-seconds (0: no).")
@click.option("--overload-seconds", type=click.FloatRange(min=1), default=30, show_default=True,
              help="How long the overload phase lasts.")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=0.1), default=5.0, show_default=True,
              help="The server's deadline (`seq2seq serve --timeout`).")
def bench_serve(model_path: Path, sources_path: Path, client_counts: tuple[int, ...], max_requests: int,
                max_seconds: float, beam_size: int, port: int, overload: float, overload_seconds: float,
                timeout_s: float) -> None:
    """Load test of `seq2seq serve` on 127.0.0.1: sentences/s and latency, with and without dynamic
    batching; with --overload, how it sheds a load above what it can serve."""
    from seq2seq.bench.serving import bench_serve as run

    for line in run(model_path, sources_path, list(client_counts), max_requests, max_seconds, beam_size, port,
                    overload, timeout_s, overload_seconds):
        click.echo(line)


@bench.command("health")
@BENCH_MODEL
@BENCH_SOURCES
@click.option("--seconds", type=click.FloatRange(min=0.1), default=20, show_default=True,
              help="How long to measure.")
@click.option("--port", type=click.IntRange(min=1, max=65535), default=8765, show_default=True,
              help="Port on 127.0.0.1 for the benchmarked server.")
def bench_health(model_path: Path, sources_path: Path, seconds: float, port: int) -> None:
    """/health's latency while `seq2seq serve` answers the largest attention requests it takes."""
    from seq2seq.bench.serving import bench_health as run

    for line in run(model_path, sources_path, seconds, port):
        click.echo(line)


@bench.command("terms")
@PARAMS
@BENCH_MODEL
@BENCH_SOURCES
@click.option("--limit", type=click.IntRange(min=1), default=150, show_default=True,
              help="Test sentences with a name (a capitalised word after the first word) to keep or mask.")
@click.option("--placeholders", is_flag=True,
              help="Instead: how often the model copies each placeholder form exactly once.")
@click.option("--form", "forms", multiple=True,
              help="With --placeholders, a form to try, e.g. '[1]' or 1001 (repeatable; default: all).")
def bench_terms(params_path: Path, model_path: Path, sources_path: Path, limit: int, placeholders: bool,
                forms: tuple[str, ...]) -> None:
    """How often a kept term survives translation, with masking and without; with --placeholders,
    which placeholder form the model copies best (docs/terms.md)."""
    from seq2seq.bench.terms import bench_placeholders, bench_terms

    lines = (bench_placeholders(model_path, sources_path, limit, list(forms), params_path) if placeholders
             else bench_terms(model_path, sources_path, limit, params_path))
    for line in lines:
        click.echo(line)
