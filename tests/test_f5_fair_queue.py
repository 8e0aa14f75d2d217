"""The shared GPU worker's queue: round robin between calls, batches across calls,
cancellation. The batch function here is a fake named as such (it records what it was
given and waits on a gate), so the order of service is exact; the thread is real."""

from __future__ import annotations

import asyncio
import threading

import pytest

from server.engines.fair_queue import Batch, BatchAborted, FairBatchQueue


class GatedFakeWork:
    """Returns each payload doubled; each batch waits until the test opens the gate."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.started = threading.Semaphore(0)
        self.gate = threading.Semaphore(0)

    def __call__(self, batch: Batch[str, str]) -> list[str]:
        self.batches.append([job.payload for job in batch.jobs])
        self.started.release()
        self.gate.acquire()
        if batch.all_cancelled:
            raise BatchAborted
        return [job.payload * 2 for job in batch.jobs]


async def wait_started(work: GatedFakeWork) -> None:
    assert await asyncio.to_thread(work.started.acquire, True, 5.0), "the worker took nothing"


async def test_f5_queue_serves_calls_round_robin_not_fifo() -> None:
    work = GatedFakeWork()
    queue: FairBatchQueue[str, str] = FairBatchQueue("test", work, max_batch=1)
    try:
        a = [queue.submit("call-a", f"a{i}") for i in range(4)]
        await wait_started(work)  # a0 runs; a1-a3 wait
        b = queue.submit("call-b", "b0")
        c = [queue.submit("call-c", f"c{i}") for i in range(2)]
        assert queue.depth == 6
        for _ in range(7):
            work.gate.release()
        results = await asyncio.gather(*(job.result() for job in [*a, b, *c]))
        assert results == ["a0a0", "a1a1", "a2a2", "a3a3", "b0b0", "c0c0", "c1c1"]
        # b and c arrived while a0 ran: each is served before a's second chunk, then turns.
        order = [batch[0] for batch in work.batches]
        assert order == ["a0", "b0", "c0", "a1", "c1", "a2", "a3"]
    finally:
        queue.stop()


async def test_f5_queue_batches_the_head_of_several_calls() -> None:
    work = GatedFakeWork()
    queue: FairBatchQueue[str, str] = FairBatchQueue("test", work, max_batch=3)
    try:
        first = queue.submit("a", "a0")
        await wait_started(work)
        jobs = [queue.submit(k, f"{k}{i}") for i in range(2) for k in ("a", "b", "c", "d")]
        for _ in range(5):
            work.gate.release()
        await asyncio.gather(first.result(), *(job.result() for job in jobs))
        # One job per call per batch, the calls served least recently first.
        assert work.batches == [["a0"], ["b0", "c0", "d0"], ["a0", "b1", "c1"], ["d1", "a1"]]
    finally:
        queue.stop()


async def test_f5_queue_cancel_drops_waiting_jobs_and_aborts_a_deserted_batch() -> None:
    work = GatedFakeWork()
    queue: FairBatchQueue[str, str] = FairBatchQueue("test", work, max_batch=1)
    try:
        running = queue.submit("a", "a0")
        await wait_started(work)
        waiting = [queue.submit("a", f"a{i}") for i in range(1, 4)]
        assert queue.depth == 3
        for job in waiting:
            job.cancel()
        assert queue.depth == 0
        running.cancel()  # the running batch is left with nobody: it aborts
        work.gate.release()
        with pytest.raises(asyncio.CancelledError):
            await running.result()
        after = queue.submit("b", "b0")
        await wait_started(work)
        work.gate.release()
        assert await after.result() == "b0b0"
        assert work.batches == [["a0"], ["b0"]]  # the cancelled jobs never ran
    finally:
        queue.stop()


async def test_f5_queue_a_failing_batch_fails_its_jobs_and_the_worker_goes_on() -> None:
    calls: list[list[str]] = []

    def fake_work(batch: Batch[str, str]) -> list[str]:
        calls.append([job.payload for job in batch.jobs])
        if any(job.payload == "boom" for job in batch.jobs):
            raise RuntimeError("out of memory")
        return ["ok" for _ in batch.jobs]

    queue: FairBatchQueue[str, str] = FairBatchQueue("test", fake_work)
    try:
        with pytest.raises(RuntimeError, match="out of memory"):
            await queue.submit("a", "boom").result()
        assert await queue.submit("a", "fine").result() == "ok"
    finally:
        queue.stop()
    with pytest.raises(RuntimeError, match="stopped"):
        queue.submit("a", "late")
