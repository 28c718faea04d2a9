"""The dynamic batcher on its own, with a stand-in search call (the model is not what is tested here)."""

import asyncio
import threading

import pytest

from seq2seq.batcher import Batcher, QueueFull, TimedOut


def test_a_request_that_expired_during_an_earlier_call_is_never_computed() -> None:
    """Two settings in one gathering run as two calls; the second request's deadline passes while
    the first call runs, so its sentences must not be computed for nobody."""
    release = threading.Event()
    computed: list[list[str]] = []

    def run(sentences: list[str], settings: str) -> list[str]:
        computed.append(sentences)
        if settings == "slow":
            release.wait(timeout=10)
        return [sentence.upper() for sentence in sentences]

    async def scenario() -> tuple[list[str], BaseException | None]:
        batcher = Batcher(run, max_sentences=8, max_wait_s=0.2, timeout_s=0.5)
        await batcher.start()
        slow = asyncio.create_task(batcher.submit(["a"], "slow"))
        expiring = asyncio.create_task(batcher.submit(["b"], "fast"))
        await asyncio.sleep(0.9)  # both gathered; the slow call holds the worker past the 0.5 s deadline
        release.set()
        results = await asyncio.gather(slow, expiring, return_exceptions=True)
        await batcher.stop()
        return results, batcher.calls

    (slow_result, expiring_result), calls = asyncio.run(scenario())
    assert isinstance(slow_result, TimedOut) and isinstance(expiring_result, TimedOut)
    assert computed == [["a"]] and calls == 1


@pytest.mark.parametrize("failing", ["first", "second"])
def test_an_error_in_one_call_reaches_its_requests_and_the_worker_survives(failing: str) -> None:
    def run(sentences: list[str], settings: str) -> list[str]:
        if settings == failing:
            raise RuntimeError("search failed")
        return [f"{settings}:{sentence}" for sentence in sentences]

    async def scenario() -> list:
        batcher = Batcher(run, max_sentences=8, max_wait_s=0.05, timeout_s=5)
        await batcher.start()
        results = await asyncio.gather(batcher.submit(["x"], "first"), batcher.submit(["y", "z"], "second"),
                                       return_exceptions=True)
        after = await batcher.submit(["w"], "third")  # the worker is still there
        await batcher.stop()
        return [*results, after]

    results = asyncio.run(scenario())
    ok = {"first": ["first:x"], "second": ["second:y", "second:z"]}
    for settings, result in zip(["first", "second"], results[:2], strict=True):
        if settings == failing:
            assert isinstance(result, RuntimeError)
        else:
            assert result == ok[settings]
    assert results[2] == ["third:w"]


def test_a_gathering_with_mixed_settings_gives_each_request_its_own_slice() -> None:
    """Requests of one setting share a call; each gets back exactly its own sentences' results, in order."""
    calls: list[tuple[str, list[str]]] = []

    def run(sentences: list[str], settings: str) -> list[str]:
        calls.append((settings, sentences))
        return [f"{settings}:{sentence}" for sentence in sentences]

    requests = [(["a1", "a2"], "A"), (["b1"], "B"), (["a3"], "A"), (["b2", "b3", "b4"], "B"), (["a4"], "A")]

    async def scenario() -> list[list[str]]:
        batcher = Batcher(run, max_sentences=16, max_wait_s=0.2, timeout_s=5)
        await batcher.start()
        results = await asyncio.gather(*(batcher.submit(sentences, settings) for sentences, settings in requests))
        await batcher.stop()
        return results

    results = asyncio.run(scenario())
    assert results == [[f"{settings}:{sentence}" for sentence in sentences] for sentences, settings in requests]
    assert sorted(calls) == [("A", ["a1", "a2", "a3", "a4"]), ("B", ["b1", "b2", "b3", "b4"])]


class Clock:
    """The batcher's clock, moved on by the stand-in search by the seconds it stands for: the
    rate and the admissions follow from the arithmetic, not from how busy the machine is."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_request_that_could_not_be_served_within_the_deadline_is_refused_at_once() -> None:
    """At 30 ms a sentence, a 0.5 s deadline and one sentence a call, 13 queued requests can be
    served within 80% of the deadline (0.4 s): the other 27 are refused at submit (503) instead of
    timing out (504) after a wait, and the 13 are all answered within the deadline."""
    clock = Clock()

    def run(sentences: list[str], settings: str) -> list[str]:
        clock.now += 0.03 * len(sentences)
        return sentences

    async def scenario() -> tuple[list, float]:
        batcher = Batcher(run, max_sentences=1, max_wait_s=0.0, timeout_s=0.5, clock=clock)
        await batcher.start()
        await batcher.submit(["calibrate"], "s")  # the first call gives the rate
        started = clock.now
        results = await asyncio.gather(*(batcher.submit([f"s{i}"], "s") for i in range(40)), return_exceptions=True)
        await batcher.stop()
        return results, clock.now - started

    results, seconds = asyncio.run(scenario())
    answered = [r for r in results if isinstance(r, list)]
    assert answered == [[f"s{i}"] for i in range(13)]
    assert all(isinstance(r, QueueFull) for r in results[13:])
    assert seconds == pytest.approx(13 * 0.03) and seconds <= 0.5


def test_admission_and_the_rate_count_sentences_not_requests() -> None:
    """A request of one text that splits into 4 sentences weighs 4: the rate is per sentence, and
    at 30 ms a sentence only 3 such requests fit in 80% of a 0.5 s deadline (12 sentences, 0.36 s)."""
    clock = Clock()

    def run(texts: list[list[str]], settings: str) -> list[int]:
        clock.now += 0.03 * sum(len(sentences) for sentences in texts)
        return [len(sentences) for sentences in texts]

    async def scenario() -> tuple[float | None, list]:
        batcher = Batcher(run, max_sentences=1, max_wait_s=0.0, timeout_s=0.5, clock=clock)
        await batcher.start()
        await batcher.submit([["a."] * 5], "s", sentences=5)  # 0.15 s for one text of 5 sentences
        rate = batcher.seconds_per_sentence
        results = await asyncio.gather(*(batcher.submit([["b."] * 4], "s", sentences=4) for _ in range(10)),
                                       return_exceptions=True)
        await batcher.stop()
        return rate, results

    rate, results = asyncio.run(scenario())
    assert rate == pytest.approx(0.03)
    assert results[:3] == [[4]] * 3 and all(isinstance(r, QueueFull) for r in results[3:])


def test_a_gathering_is_bounded_in_sentences() -> None:
    """Four requests of 4 sentences each, 8 sentences a gathering: two calls of two requests."""
    calls: list[list[str]] = []

    def run(texts: list[str], settings: str) -> list[str]:
        calls.append(texts)
        return texts

    async def scenario() -> list[list[str]]:
        batcher = Batcher(run, max_sentences=8, max_wait_s=0.0, timeout_s=5)
        await batcher.start()
        results = await asyncio.gather(*(batcher.submit([f"t{i}"], "s", sentences=4) for i in range(4)))
        await batcher.stop()
        return results

    assert asyncio.run(scenario()) == [["t0"], ["t1"], ["t2"], ["t3"]]
    assert calls == [["t0", "t1"], ["t2", "t3"]]
