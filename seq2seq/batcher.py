"""Dynamic batching: requests that arrive close together share one search call.

Each request waits in a bounded queue; one worker takes the first waiting request, gathers more for
at most `max_wait_s` (or until `max_sentences` are gathered), and runs them in one call on a
single worker thread, so the event loop keeps answering while the model computes. Requests with
different decoding settings (beam size, attention) are run as separate calls of one gathering.

A request is a list of items (texts) with a count of the sentences they hold (a text may split
into several): the gathering bound, the queue's work and the rate are all counted in sentences,
the unit the search's time grows with.

Under overload a request is refused at once (503) when the sentences already queued would take
longer than the deadline to compute at the rate of recent calls: queued, it would only end in a
504 after a wait, and it would lengthen the wait of those behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

# A request is queued only if it is expected to be answered within this share of the deadline:
# the rate of recent calls varies, and one admitted at the very edge would often end in a 504.
ADMIT_WITHIN = 0.8


class QueueFull(Exception):
    """The queue holds `queue_size` requests already, or more work than the deadline allows: answer 503."""


class TimedOut(Exception):
    """The request waited longer than `timeout_s`: answer 504."""


@dataclass
class Job:
    """One request: its items, the sentences they hold, its decoding settings (a key: equal keys
    may share a call)."""

    items: list[Any]
    sentences: int
    settings: Hashable
    future: asyncio.Future = field(repr=False)


# run(items, settings) -> one result per item, in order; called on the worker thread.
RunBatch = Callable[[list[Any], Any], Sequence[Any]]


class Batcher:
    """Gathers concurrent requests into batched calls of `run`.

    `max_sentences` bounds a gathering (a single larger request still runs whole); with
    `max_wait_s` 0 and `max_sentences` 1 every request runs alone (no dynamic batching).
    `clock` (seconds) times the gathering and the calls: the tests pass one they advance themselves.
    """

    def __init__(self, run: RunBatch, max_sentences: int = 64, max_wait_s: float = 0.01, queue_size: int = 256,
                 timeout_s: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.run = run
        self.clock = clock
        self.max_sentences = max_sentences
        self.max_wait_s = max_wait_s
        self.timeout_s = timeout_s
        self.queue: asyncio.Queue[Job] = asyncio.Queue(maxsize=queue_size)
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="seq2seq-search")
        self.worker: asyncio.Task | None = None
        self.calls = 0  # search calls made: the tests check that concurrent requests shared one
        self.queued_sentences = 0
        self.seconds_per_sentence: float | None = None  # of recent calls (moving average); None before the first
        self._backlog_since: float | None = None  # when the last call ended with requests still waiting

    async def start(self) -> None:
        self.worker = asyncio.create_task(self._work())

    async def stop(self) -> None:
        """Finish what is queued, then stop the worker."""
        await self.queue.join()
        if self.worker is not None:
            self.worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.worker
        self.executor.shutdown(wait=True)

    async def submit(self, items: list[Any], settings: Hashable, sentences: int | None = None) -> list[Any]:
        """Queue a request of `items` holding `sentences` sentences (default: one an item) and wait
        for its results, one per item; `QueueFull` or `TimedOut` when it cannot be served."""
        job = Job(items, len(items) if sentences is None else sentences, settings,
                  asyncio.get_running_loop().create_future())
        if self.queued_sentences and self.expected_seconds(job.sentences) > ADMIT_WITHIN * self.timeout_s:
            raise QueueFull
        try:
            self.queue.put_nowait(job)
        except asyncio.QueueFull:
            raise QueueFull from None
        self.queued_sentences += job.sentences
        try:
            return await asyncio.wait_for(asyncio.shield(job.future), self.timeout_s)
        except asyncio.TimeoutError:
            job.future.cancel()  # the worker skips it if it has not started it yet
            raise TimedOut from None

    def expected_seconds(self, sentences: int) -> float:
        """Seconds until a request of `sentences` queued now would be answered, at the rate of recent
        calls. (`submit` asks only when others wait: a request alone is never refused for being slow.)"""
        if self.seconds_per_sentence is None:
            return 0.0
        return (self.queued_sentences + sentences) * self.seconds_per_sentence

    async def _gather(self) -> list[Job]:
        """The first waiting job, plus those that arrive within `max_wait_s`, up to `max_sentences`."""
        jobs = [await self.queue.get()]
        count = jobs[0].sentences
        deadline = self.clock() + self.max_wait_s
        while count < self.max_sentences:
            try:
                job = self.queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - self.clock()
                if remaining <= 0:
                    break
                try:
                    job = await asyncio.wait_for(self.queue.get(), remaining)
                except asyncio.TimeoutError:
                    break
            jobs.append(job)
            count += job.sentences
        self.queued_sentences -= count
        return jobs

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = await self._gather()
            try:
                groups: dict[Hashable, list[Job]] = {}
                for job in jobs:
                    if not job.future.done():  # timed out while queued: nobody waits for it
                        groups.setdefault(job.settings, []).append(job)
                for settings, group in groups.items():
                    group = [job for job in group if not job.future.done()]  # expired during an earlier call
                    if not group:
                        continue
                    items = [item for job in group for item in job.items]
                    self.calls += 1
                    started = self.clock()
                    try:
                        results = await loop.run_in_executor(self.executor, self.run, items, settings)
                        ended = self.clock()
                        # With a backlog the time between calls (gathering, the event loop's other
                        # work) is part of what each sentence costs, so it counts too.
                        since = started if self._backlog_since is None else self._backlog_since
                        self._measured(sum(job.sentences for job in group), ended - since)
                        self._backlog_since = ended if self.queued_sentences else None
                    except Exception as error:  # reported to each waiting request, never kills the worker
                        for job in group:
                            if not job.future.done():
                                job.future.set_exception(error)
                        continue
                    start = 0
                    for job in group:
                        if not job.future.done():
                            job.future.set_result(list(results[start : start + len(job.items)]))
                        start += len(job.items)
            finally:
                for _ in jobs:
                    self.queue.task_done()

    def _measured(self, sentences: int, seconds: float) -> None:
        """Fold a call's seconds per sentence into the moving average (recent calls weigh most)."""
        rate = seconds / max(sentences, 1)
        previous = self.seconds_per_sentence
        self.seconds_per_sentence = rate if previous is None else 0.7 * previous + 0.3 * rate
