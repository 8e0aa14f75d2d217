"""Run a blocking generator on an engine's worker thread and consume it asynchronously.

llama.cpp, Piper and Whisper block while they compute. Each engine owns one worker thread
(its models are not safe to share between threads), and its generators are driven there.
Items cross to the event loop through a queue; closing the async iterator sets a stop flag
that the worker checks between items, so a barge-in stops generation within one item, and
before the first: a job abandoned while it waited its turn (a speculative reply dropped
while the TTS spoke for another call) never starts.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TypeVar

from server.engines.deadlines import DeadlineExecutor

T = TypeVar("T")
R = TypeVar("R")

_DONE = object()


class EngineWorker:
    """One thread that runs every blocking call of one engine: in the order asked, unless
    a caller says how much audio it has in hand (server.engines.deadlines)."""

    def __init__(self, name: str) -> None:
        self._executor = DeadlineExecutor(f"hark-{name}")

    async def run(self, fn: Callable[..., R], *args: object) -> R:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, *args)

    async def iterate(
        self, make: Callable[[], Iterator[T]], ahead: int | None = None
    ) -> AsyncIterator[T]:
        """Drive `make()` on the worker thread, yielding its items here as they come.

        With `ahead`, the worker stops once that many items wait unread, and goes on as
        they are taken: a consumer that pauses (the reply's first words being spoken)
        frees the CPU the generator would otherwise use.
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

        future = loop.run_in_executor(self._executor, produce)
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
        self._executor.shutdown(wait=False, cancel_futures=True)
