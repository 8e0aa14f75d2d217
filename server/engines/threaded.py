"""Run a blocking generator on an engine's worker thread and consume it asynchronously.

llama.cpp, Piper and Whisper block while they compute. Each engine owns one worker thread
(its models are not safe to share between threads), and its generators are driven there.
Items cross to the event loop through a queue; closing the async iterator sets a stop flag
that the worker checks between items (and before the first: a job abandoned while it
waited never starts), so a barge-in stops generation within one item. A worker made
`by_deadline` serves its jobs the soonest needed first (`server.engines.deadline`), not
in order of arrival.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from server.engines.deadline import EarliestFirstExecutor

T = TypeVar("T")
R = TypeVar("R")

_DONE = object()


class EngineWorker:
    """One thread that runs every blocking call of one engine, in order (or, made
    `by_deadline`, the soonest needed first)."""

    def __init__(self, name: str, by_deadline: bool = False) -> None:
        self._executor: ThreadPoolExecutor | EarliestFirstExecutor
        if by_deadline:
            self._executor = EarliestFirstExecutor(name)
        else:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"hark-{name}")

    def _submit(
        self, fn: Callable[[], Any], deadline: float | None
    ) -> concurrent.futures.Future[Any]:
        if isinstance(self._executor, EarliestFirstExecutor):
            return self._executor.submit(fn, deadline)
        return self._executor.submit(fn)

    async def run(self, fn: Callable[..., R], *args: object) -> R:
        return await asyncio.wrap_future(self._submit(functools.partial(fn, *args), None))

    async def iterate(
        self,
        make: Callable[[], Iterator[T]],
        ahead: int | None = None,
        deadline: float | None = None,
    ) -> AsyncIterator[T]:
        """Drive `make()` on the worker thread, yielding its items here as they come.

        With `ahead`, the worker stops once that many items wait unread, and goes on as
        they are taken: a consumer that pauses (the reply's first words being spoken)
        frees the CPU the generator would otherwise use. `deadline`: when the items are
        needed (time.monotonic()), for a worker made `by_deadline`; None: now.
        """
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[object] = asyncio.Queue()
        stop = threading.Event()
        room = threading.Semaphore(ahead) if ahead else None

        def produce() -> None:
            try:
                if stop.is_set():
                    return  # abandoned while it waited its turn
                for item in make():
                    if stop.is_set():
                        break
                    while room is not None and not room.acquire(timeout=0.05):
                        if stop.is_set():
                            return
                    loop.call_soon_threadsafe(queue.put_nowait, item)
                    if stop.is_set():
                        break
            except BaseException as exc:  # handed to the consumer, raised there
                loop.call_soon_threadsafe(queue.put_nowait, exc)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, _DONE)

        future = asyncio.wrap_future(self._submit(produce, deadline))
        try:
            while True:
                item = await queue.get()
                if room is not None:
                    room.release()
                if item is _DONE:
                    break
                if isinstance(item, BaseException):
                    raise item
                yield item  # type: ignore[misc]
        finally:
            stop.set()
            # Do not wait for the worker here: a cancelled consumer must return at once.
            future.add_done_callback(lambda f: f.cancelled() or f.exception())

    def shutdown(self) -> None:
        if isinstance(self._executor, EarliestFirstExecutor):
            self._executor.shutdown()
        else:
            self._executor.shutdown(wait=False, cancel_futures=True)
