"""/health latency while the server answers a maximal attention request.

Starts `seq2seq serve` on 127.0.0.1 with the default model; one client sends the largest request
the API takes with `attention: true` (32 test sentences, at most 5,000 characters), again and again,
while another asks /health every 10 ms. Prints /health's p50/p99/max and the attention answers' sizes.

    .venv/bin/python bench/health_latency.py [--model models/model/best.pt] [--seconds 20]
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from pathlib import Path

import httpx

from seq2seq.bench.serving import free_port, percentile, serve_process


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
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with serve_process(args.model, port):
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
    print(f"{len(sentences)} sentences, {total} characters, attention: {len(sizes)} answers of "
          f"{statistics.mean(sizes) / 1e6:.2f} MB; /health: {len(health)} requests, p50 {percentile(health, 50):.1f} "
          f"ms, p99 {percentile(health, 99):.1f} ms, max {max(health):.1f} ms")


if __name__ == "__main__":
    main()
