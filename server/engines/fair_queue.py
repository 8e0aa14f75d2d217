"""One worker thread for an accelerator, shared by every call: round robin, batched.

A GPU model is loaded once and serves all calls. Taking its work first come, first
served would let one call's long reply (ten clauses queued at once) hold up every other
call's first words; so each call (a `key`) has its own queue, and the worker serves the
calls in turn, the one served least recently first (a call new to the queue, or back
after a while, goes ahead of one just served). Where the engine gains from it (a GPU's
throughput grows with the batch), one turn takes the head job of up to `max_batch`
calls and runs them together.

Jobs are cancelled by their owner (a caller barged in): a queued job is dropped at once,
and a running batch whose jobs are all cancelled may stop early (the engine checks
`Batch.all_cancelled` between its steps and raises `BatchAborted`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

log = logging.getLogger("hark.engines")

MAX_REMEMBERED_KEYS = 4096
P = TypeVar("P")
R = TypeVar("R")


class BatchAborted(Exception):
    """Raised by an engine's batch function when every job of its batch was cancelled."""


@dataclass(eq=False)
class Job(Generic[P, R]):
    """One unit of work (an F5 chunk, an utterance) of one call."""

    key: Hashable
    payload: P
    future: concurrent.futures.Future[R] = field(default_factory=concurrent.futures.Future)
    _cancelled: threading.Event = field(default_factory=threading.Event)
    _queue: FairBatchQueue[P, R] | None = None

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def cancel(self) -> None:
        """Drop the job: taken out of the queue if it waits; flagged if it runs."""
        self._cancelled.set()
        if self._queue is not None:
            self._queue._withdraw(self)
        self.future.cancel()

    async def result(self) -> R:
        return await asyncio.wrap_future(self.future)


@dataclass
class Batch(Generic[P, R]):
    jobs: Sequence[Job[P, R]]

    @property
    def all_cancelled(self) -> bool:
        return all(job.cancelled for job in self.jobs)


RunBatch = Callable[[Batch[P, R]], Sequence[R]]


class FairBatchQueue(Generic[P, R]):
    """Jobs from many calls, served round robin by one worker thread in batches."""

    def __init__(self, name: str, run_batch: RunBatch[P, R], max_batch: int = 1) -> None:
        self.name = name
        self.max_batch = max(1, max_batch)
        self._run_batch = run_batch
        self._queues: dict[Hashable, deque[Job[P, R]]] = {}
        # When each call was last served (a turn counter), for the round robin; bounded.
        self._served_at: OrderedDict[Hashable, int] = OrderedDict()
        self._turn = 0
        self._lock = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._work, name=f"hark-{name}", daemon=True)
        self._thread.start()
        # Served batches' keys, newest last (bounded): tests and operators read the order.
        self.served: deque[tuple[Hashable, ...]] = deque(maxlen=256)

    @property
    def depth(self) -> int:
        """Jobs waiting (not running): what an admission check compares with its limit."""
        with self._lock:
            return sum(len(queue) for queue in self._queues.values())

    def submit(self, key: Hashable, payload: P) -> Job[P, R]:
        job: Job[P, R] = Job(key, payload, _queue=self)
        with self._lock:
            if self._stopped:
                raise RuntimeError(f"the {self.name} worker has stopped")
            self._queues.setdefault(key, deque()).append(job)
            self._lock.notify()
        return job

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            pending = [job for queue in self._queues.values() for job in queue]
            self._queues.clear()
            self._lock.notify_all()
        for job in pending:
            job.future.cancel()

    def _withdraw(self, job: Job[P, R]) -> None:
        with self._lock:
            queue = self._queues.get(job.key)
            if queue is None or job not in queue:
                return  # running or done: the engine sees the flag
            queue.remove(job)
            if not queue:
                del self._queues[job.key]

    def _take(self) -> Batch[P, R] | None:
        """The head job of each of the `max_batch` calls served least recently."""
        with self._lock:
            while not self._queues and not self._stopped:
                self._lock.wait()
            if self._stopped:
                return None
            keys = sorted(self._queues, key=lambda k: self._served_at.get(k, -1))
            jobs: list[Job[P, R]] = []
            for key in keys[: self.max_batch]:
                queue = self._queues[key]
                jobs.append(queue.popleft())
                if not queue:
                    del self._queues[key]
                self._served_at[key] = self._turn
                self._served_at.move_to_end(key)
            self._turn += 1
            while len(self._served_at) > MAX_REMEMBERED_KEYS:
                self._served_at.popitem(last=False)
            return Batch(jobs)

    def _work(self) -> None:
        while (batch := self._take()) is not None:
            if not batch.all_cancelled:
                self._serve(batch)

    def _serve(self, batch: Batch[P, R]) -> None:
        self.served.append(tuple(job.key for job in batch.jobs))
        try:
            results = self._run_batch(batch)
        except BatchAborted:
            for job in batch.jobs:
                job.future.cancel()
            return
        except BaseException as exc:
            log.exception("%s: a batch of %d failed", self.name, len(batch.jobs))
            for job in batch.jobs:
                with contextlib.suppress(concurrent.futures.InvalidStateError):
                    job.future.set_exception(exc)  # unless its owner cancelled it meanwhile
            return
        for job, result in zip(batch.jobs, results, strict=True):
            if job.cancelled:
                job.future.cancel()
                continue
            with contextlib.suppress(concurrent.futures.InvalidStateError):
                job.future.set_result(result)
