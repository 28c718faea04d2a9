"""/health latency while the server answers a maximal attention request.

Starts `seq2seq serve` on 127.0.0.1 with the default model; one client sends the largest request
the API takes with `attention: true` (32 test sentences, at most 5,000 characters), again and again,
while another asks /health every 10 ms. Prints /health's p50/p99/max and the attention answers' sizes.

    .venv/bin/python bench/health_latency.py [--model models/model/best.pt] [--seconds 20]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/model/best.pt"))
    parser.add_argument("--seconds", type=float, default=20)
    args = parser.parse_args()
    sentences, total = [], 0
    for line in Path("data/prepared/test.en").read_text(encoding="utf-8").splitlines():
        if len(sentences) < 32 and total + len(line) <= 5000:
            sentences.append(line)
            total += len(line)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "seq2seq", "serve", "--model", str(args.model), "--port",
                               str(port)], stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                httpx.get(f"{url}/health", timeout=2)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        stop, sizes, health = threading.Event(), [], []

        def attention_client() -> None:
            with httpx.Client(timeout=120) as client:
                while not stop.is_set():
                    answer = client.post(f"{url}/translate", json={"text": sentences, "attention": True})
                    sizes.append(len(answer.content))

        worker = threading.Thread(target=attention_client)
        worker.start()
        with httpx.Client(timeout=30) as client:
            started = time.monotonic()
            while time.monotonic() - started < args.seconds:
                sent = time.perf_counter()
                client.get(f"{url}/health")
                health.append(1000 * (time.perf_counter() - sent))
                time.sleep(0.01)
        stop.set()
        worker.join()
    finally:
        server.terminate()
        server.wait(timeout=60)
    health.sort()
    print(f"{len(sentences)} sentences, {total} characters, attention: {len(sizes)} answers of "
          f"{statistics.mean(sizes) / 1e6:.2f} MB; /health: {len(health)} requests, p50 {health[len(health) // 2]:.1f} "
          f"ms, p99 {health[int(0.99 * len(health))]:.1f} ms, max {health[-1]:.1f} ms")


if __name__ == "__main__":
    main()
