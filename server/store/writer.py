"""One task writes what calls finish, in batches, off the event loop.

A call hands over a finished item as a ready statement (`put`, a non-blocking append to a
bounded queue: microseconds on the loop). The writer takes everything waiting, up to a
batch, and commits it in one transaction on the database's own thread (SQLite) or
connection (PostgreSQL), then takes the next. An item is therefore on disk a few
milliseconds after it is done, so a killed server loses at most what was still in the
queue: the turn in flight. If the database stalls, the queue fills and further items are
dropped and counted rather than stalling a call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Sequence

from server.store.database import Database, Statement

log = logging.getLogger("hark.store")

MAX_QUEUE = 10_000
MAX_BATCH = 256


class HistoryWriter:
    def __init__(self, db: Database, *, max_queue: int = MAX_QUEUE, max_batch: int = MAX_BATCH):
        self.db = db
        self.max_batch = max_batch
        self._queue: asyncio.Queue[Statement | asyncio.Future[None]] = asyncio.Queue(max_queue)
        self._task: asyncio.Task[None] | None = None
        self.written = 0
        self.dropped = 0
        self.failed = 0
        # Seconds each of the last batches took to commit (the benchmark reads them).
        self.batch_seconds: deque[float] = deque(maxlen=10_000)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="history-writer")

    def put(self, statements: Sequence[Statement]) -> bool:
        """Queue statements to commit together with whatever else is waiting. Never
        blocks; False (and counted) when the queue is full."""
        try:
            for statement in statements:
                self._queue.put_nowait(statement)
        except asyncio.QueueFull:
            self.dropped += 1
            log.error("history writer queue full (%d); an item was dropped", self._queue.maxsize)
            return False
        return True

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    async def flush(self) -> None:
        """Wait until everything queued before this call is committed."""
        if self._task is None:
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await self._queue.put(done)
        await done

    async def close(self) -> None:
        """Commit what is queued, then stop."""
        if self._task is None:
            return
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.flush(), timeout=10)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def _run(self) -> None:
        while True:
            first = await self._queue.get()
            batch: list[Statement] = []
            waiters: list[asyncio.Future[None]] = []
            entry = first
            while True:
                if isinstance(entry, asyncio.Future):
                    waiters.append(entry)
                else:
                    batch.append(entry)
                if len(batch) >= self.max_batch or self._queue.empty():
                    break
                entry = self._queue.get_nowait()
            if batch:
                await self._commit(batch)
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    async def _commit(self, batch: list[Statement]) -> None:
        started = time.perf_counter()
        try:
            await self.db.transaction(batch)
            self.written += len(batch)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # One bad statement (its conversation deleted mid-call) must not lose the rest.
            log.warning("history batch of %d failed (%s); writing one by one", len(batch), exc)
            for statement in batch:
                try:
                    await self.db.transaction([statement])
                    self.written += 1
                except asyncio.CancelledError:
                    raise
                except Exception as one:
                    self.failed += 1
                    log.error("history write failed: %s", one)
        self.batch_seconds.append(time.perf_counter() - started)
