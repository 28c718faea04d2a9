"""Benchmarks on the real data: training throughput, translation throughput, peak memory.

Speed is measured here, not in tests. The machine is noisy, so compare variants as ratios
within one run.
"""

from __future__ import annotations

import contextlib
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
from seq2seq.config import EvaluateConfig, ModelConfig, Params
from seq2seq.data import ParallelData, collate, make_batches
from seq2seq.device import (
    AVX2_EMULATION,
    CPU_CLASS_DESCRIPTIONS,
    autocast,
    machine_description,
    memory_mib,
    pick_device,
)
from seq2seq.errors import UserError
from seq2seq.model import Seq2Seq
from seq2seq.training_data import TrainPaths
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


def bench_memory(params: Params, max_steps: int, every: int, window: int = 500,
                 paths: TrainPaths | None = None) -> Iterator[str]:
    """Yield report lines: this process's resident memory while it trains on the train stage's own
    batches (no validation), every `every` steps, until it grew by less than 2% over the last
    `window` steps (a plateau) or for `max_steps`."""
    import os

    from seq2seq.training_data import TrainingData
    from seq2seq.training_process import start_process

    config = params.train
    if memory_mib() is None:
        raise UserError("bench memory reads /proc/self/status, which this system lacks (Linux only)")
    device, world = start_process(config)
    data = TrainingData.load(config, paths or TrainPaths())
    model = Seq2Seq(params.model, data.source_vocab_size, data.tokenizer.target.get_piece_size()).to(device).train()
    optimizer = make_optimizer(model, config)
    yield (f"device {device}, bf16 {config.bf16}, batch_tokens {config.batch_tokens}, oneDNN kernel cache "
           f"{os.environ.get('ONEDNN_PRIMITIVE_CACHE_CAPACITY', 'default')} (ONEDNN_PRIMITIVE_CACHE_CAPACITY)")
    resident: dict[int, float] = {}
    step, epoch, tokens, started = 0, 0, 0, time.perf_counter()
    while step < max_steps:
        for indices in data.epoch_batches(config, epoch, world_size=1)[: max_steps - step]:
            step += 1
            batch = collate(data.epoch_data(config, epoch), indices).to(device)
            tokens += train_step(model, optimizer, batch, learning_rate(config, step, 1.0), world, config, device)[1]
            if step % every:
                continue
            resident[step], peak = memory_mib()
            yield (f"step {step:>5}: {resident[step]:>6,.0f} MiB resident, peak {peak:,.0f} MiB, "
                   f"{tokens / (time.perf_counter() - started):,.0f} target tokens/s")
            earlier = [s for s in resident if s <= step - window]
            if earlier and resident[step] <= 1.02 * resident[earlier[-1]]:
                yield (f"plateau: {resident[step]:,.0f} MiB at step {step}, {resident[earlier[-1]]:,.0f} MiB "
                       f"at step {earlier[-1]}")
                return
        epoch += 1
    yield f"no plateau within {max_steps} steps (less than 2% growth over {window} steps)"


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


def percentile(values: list[float], q: float) -> float:
    """The `q`th percentile (0-100) of `values`, nearest rank; NaN for none."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] if ordered else float("nan")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclasses.dataclass
class LoadResult:
    """What `clients` concurrent clients got from a server: counts, seconds and latencies (seconds)."""

    clients: int
    requests: int
    errors: int
    seconds: float
    latencies: list[float]

    def percentile(self, q: float) -> float:
        return percentile(self.latencies, q)


def load_test(url: str, sentences: list[str], clients: int, max_requests: int, max_seconds: float) -> LoadResult:
    """`clients` threads each send one sentence a request (keep-alive, like a browser), until
    `max_requests` requests are sent or `max_seconds` have passed. Any non-200 answer is an error."""
    import http.client
    import itertools
    import json
    import threading
    from urllib.parse import urlsplit

    address = urlsplit(url)
    counter = itertools.count()
    lock = threading.Lock()
    latencies: list[float] = []
    errors = [0]
    started = time.perf_counter()

    def client() -> None:
        connection = http.client.HTTPConnection(address.hostname, address.port, timeout=60)
        while (index := next(counter)) < max_requests and time.perf_counter() - started < max_seconds:
            body = json.dumps({"text": sentences[index % len(sentences)]})
            sent = time.perf_counter()
            try:
                connection.request("POST", "/translate", body, {"Content-Type": "application/json"})
                response = connection.getresponse()
                response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException):
                ok = False
                connection.close()
                connection = http.client.HTTPConnection(address.hostname, address.port, timeout=60)
            with lock:
                latencies.append(time.perf_counter() - sent)
                errors[0] += not ok
        connection.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return LoadResult(clients, len(latencies), errors[0], time.perf_counter() - started, latencies)


@dataclasses.dataclass
class OverloadResult:
    """What an open-loop load got: each request's HTTP status (0: no answer) and latency in
    seconds, and the server's resident memory (MiB) sampled while it ran."""

    statuses: list[int]
    latencies: list[float]
    server_mib: list[float]

    def share(self, status: int) -> float:
        return self.statuses.count(status) / max(len(self.statuses), 1)

    def answered_latencies(self) -> list[float]:
        return [t for t, status in zip(self.latencies, self.statuses, strict=True) if status == 200]


def overload_test(url: str, sentences: list[str], rate: float, seconds: float, answer_timeout: float,
                  server_pid: int) -> OverloadResult:
    """Open loop, as users arrive: a request every 1/`rate` s for `seconds`, each on its own
    connection, whether or not earlier ones were answered; memory of the server every 0.5 s."""
    import asyncio

    import httpx

    async def run() -> OverloadResult:
        statuses: list[int] = []
        latencies: list[float] = []
        memory: list[float] = []
        finished = asyncio.Event()

        async def one(client: httpx.AsyncClient, text: str) -> None:
            sent = time.perf_counter()
            try:
                status = (await client.post("/translate", json={"text": text})).status_code
            except httpx.HTTPError:
                status = 0
            statuses.append(status)
            latencies.append(time.perf_counter() - sent)

        async def watch_memory() -> None:
            while not finished.is_set():
                reading = memory_mib(server_pid)
                if reading is not None:
                    memory.append(reading[0])
                await asyncio.sleep(0.5)

        limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=answer_timeout) as client:
            watcher = asyncio.create_task(watch_memory())
            started, tasks = time.perf_counter(), []
            for index in range(int(rate * seconds)):
                await asyncio.sleep(max(0.0, started + index / rate - time.perf_counter()))
                tasks.append(asyncio.create_task(one(client, sentences[index % len(sentences)])))
            await asyncio.gather(*tasks)
            finished.set()
            await watcher
        return OverloadResult(statuses, latencies, memory)

    return asyncio.run(run())


@contextlib.contextmanager
def serve_process(model_path: Path, port: int, beam_size: int = 5, batching: bool = True, timeout_s: float = 30.0
                  ) -> Iterator[subprocess.Popen]:
    """A `seq2seq serve` process on 127.0.0.1:`port`, once it answers /health; SIGTERM at the end."""
    import tempfile
    import urllib.request

    command = [sys.executable, "-m", "seq2seq", "serve", "--model", str(model_path), "--port", str(port),
               "--beam", str(beam_size), "--batching" if batching else "--no-batching", "--timeout", str(timeout_s)]
    # Its log goes to a file: a pipe nobody reads would fill up and stop the server mid-run.
    with tempfile.TemporaryFile("w+") as log:
        server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log, text=True)
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5).close()
                    break
                except OSError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        log.seek(0)
                        raise RuntimeError(f"the server did not start: {log.read()[-500:]}") from None
                    time.sleep(0.2)
            yield server
        finally:
            server.terminate()  # SIGTERM: the server finishes what is in flight, then exits
            server.wait(timeout=120)


def bench_serve(model_path: Path, sources_path: Path, client_counts: list[int], max_requests: int,
                max_seconds: float, beam_size: int, port: int, overload: float = 0.0, timeout_s: float = 5.0,
                overload_seconds: float = 30.0) -> Iterator[str]:
    """Yield a Markdown table: a `seq2seq serve` process on 127.0.0.1, with and without dynamic
    batching, under each number of concurrent clients (one sentence a request). With `overload`,
    then an open-loop load at `overload` times the best rate the batching server sustained: which
    share it answers, and how fast, which it refuses (503) or gives up (504), and its memory."""
    sentences = [line for line in sources_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    url = f"http://127.0.0.1:{port}"
    yield (f"{len(sentences)} sentences of {sources_path}, one a request, beam {beam_size}; each level: at most "
           f"{max_requests} requests or {max_seconds:g} s; server deadline {timeout_s:g} s")
    yield "| batching | clients | requests | errors | sentences/s | p50 ms | p95 ms | p99 ms |"
    yield "|---|---:|---:|---:|---:|---:|---:|---:|"
    sustained, overload_report = 0.0, []
    for batching in (True, False):
        with serve_process(model_path, port, beam_size, batching, timeout_s) as server:
            load_test(url, sentences, 2, 4, max_seconds)  # warm-up
            for clients in client_counts:
                result = load_test(url, sentences, clients, max_requests, max_seconds)
                ms = [1000 * result.percentile(q) for q in (50, 95, 99)]
                rate = result.requests / result.seconds
                sustained = max(sustained, rate) if batching else sustained
                yield (f"| {'on' if batching else 'off'} | {clients} | {result.requests} | {result.errors} | "
                       f"{rate:.1f} | {ms[0]:.0f} | {ms[1]:.0f} | {ms[2]:.0f} |")
            if batching and overload:
                result = overload_test(url, sentences, overload * sustained, overload_seconds, timeout_s + 30,
                                       server.pid)
                overload_report = list(overload_table(result, overload, sustained, overload_seconds))
    yield from overload_report


def overload_table(result: OverloadResult, factor: float, sustained: float, seconds: float) -> Iterator[str]:
    """The lines that report an open-loop overload: answer shares, latencies of the answered, server memory."""
    answered = result.answered_latencies()
    ms = [1000 * percentile(answered, q) for q in (50, 99, 100)]
    memory = result.server_mib
    half = len(memory) // 2
    other = 1 - sum(result.share(status) for status in (200, 503, 504))
    yield ""
    yield (f"open loop at {factor:g}x the {sustained:.1f} requests/s sustained: {factor * sustained:.1f} requests/s "
           f"for {seconds:g} s ({len(result.statuses)} requests), batching on")
    yield "| answered | 503 | 504 | other | answered p50 ms | p99 ms | max ms | MiB: peak 1st half | 2nd half | end |"
    yield "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    yield (f"| {result.share(200):.0%} | {result.share(503):.0%} | {result.share(504):.0%} | {other:.0%} | "
           f"{ms[0]:.0f} | {ms[1]:.0f} | {ms[2]:.0f} | {max(memory[:half] or memory):.0f} | "
           f"{max(memory[half:]):.0f} | {memory[-1]:.0f} |")


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


def sweep_overrides(sweep: dict) -> dict[str, list[str]]:
    """Each run of a sweep file as DVC's `-S` overrides of params.yaml.

    A sweep file holds `base` (overrides shared by every run) and `runs` (name -> overrides), each
    a mapping of params.yaml sections to keys and values; a run's section keys replace the base's.
    `++key=value` sets the whole value, new keys and mappings too (Hydra's override syntax).
    """
    import yaml

    def flow(value: object) -> str:  # a YAML value on one line: 0.1, true, {pydocs: 0.1, bible: 0.1}
        return yaml.safe_dump(value, default_flow_style=True, sort_keys=False).strip().removesuffix("\n...")

    base = sweep.get("base") or {}
    overrides = {}
    for name, run in (sweep.get("runs") or {}).items():
        run = run or {}
        merged = {section: {**base.get(section, {}), **run.get(section, {})} for section in {**base, **run}}
        overrides[name] = [f"++{section}.{key}={flow(value)}" for section in sorted(merged)
                           for key, value in merged[section].items()]
    return overrides


def queue_sweep(sweep_path: Path, dry_run: bool = False) -> Iterator[str]:
    """Queue each run of a sweep file as a DVC experiment (`dvc exp run --queue`), named after the
    run; yield each command. `dvc queue start --jobs N` then runs them and `dvc exp show` compares."""
    import shlex

    import yaml

    try:
        sweep = yaml.safe_load(sweep_path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise UserError(f"cannot read the sweep {sweep_path}: {error}") from None
    if not isinstance(sweep, dict) or not isinstance(sweep.get("runs"), dict):
        raise UserError(f"{sweep_path}: a sweep holds `runs` (name -> params overrides) and optionally `base`")
    for name, overrides in sweep_overrides(sweep).items():
        command = ["dvc", "exp", "run", "--queue", "--name", name, *(part for o in overrides for part in ("-S", o))]
        yield shlex.join(command)
        if not dry_run:
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode != 0:
                raise UserError(f"dvc could not queue {name}: {(result.stderr or result.stdout).strip()[-300:]}")
