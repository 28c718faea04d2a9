"""Measurement: `seq2seq serve` under load (`seq2seq bench serve`): closed-loop clients with and
without dynamic batching, then an open-loop overload; /health's latency while the server answers
the largest attention requests (`bench health`); and the helpers that start a server and measure
it, shared with the scripts in the repository's `bench/`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from seq2seq.device import memory_mib


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


def bench_health(model_path: Path, sources_path: Path, seconds: float, port: int) -> Iterator[str]:
    """Yield a report line: /health's latency (p50, p99, max) while one client sends, again and again,
    the largest request the API takes with `attention: true` (the first lines of `sources_path`, at
    most 32 and 5,000 characters), and another asks /health every 10 ms for `seconds`."""
    import threading

    import httpx

    sentences, total = [], 0
    for line in sources_path.read_text(encoding="utf-8").splitlines():
        if len(sentences) < 32 and total + len(line) <= 5000:
            sentences.append(line)
            total += len(line)
    url = f"http://127.0.0.1:{port}"
    with serve_process(model_path, port):
        stop, sizes, health = threading.Event(), [], []

        def attention_client() -> None:
            with httpx.Client(timeout=120) as client:
                while not stop.is_set():
                    sizes.append(len(client.post(f"{url}/translate", json={"text": sentences, "attention": True}
                                                 ).content))

        worker = threading.Thread(target=attention_client)
        worker.start()
        with httpx.Client(timeout=30) as client:
            started = time.monotonic()
            while time.monotonic() - started < seconds:
                sent = time.perf_counter()
                client.get(f"{url}/health")
                health.append(1000 * (time.perf_counter() - sent))
                time.sleep(0.01)
        stop.set()
        worker.join()
    yield (f"{len(sentences)} sentences, {total} characters, attention: {len(sizes)} answers of "
           f"{statistics.mean(sizes) / 1e6:.2f} MB; /health: {len(health)} requests, p50 {percentile(health, 50):.1f} "
           f"ms, p99 {percentile(health, 99):.1f} ms, max {max(health):.1f} ms")
