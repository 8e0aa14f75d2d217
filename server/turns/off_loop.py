"""One call's inputs handled in order, with their heavy numpy work run off the event loop.

The event loop paces every call's 20 ms outbound frames, so nothing on it may take
milliseconds. Deciding what to do with a voice the echo listener held back does: fitting
the echo of what was sent to the held audio (`media.echo.held`, ~4 ms per 0.5 s of it)
and asking whether a held onset could be echo (`media.echo.onset`, ~2.5 ms). Those
decisions are written as generators of `Steps`: the code between two `yield`s runs on
the loop, each yielded `Offload` on a worker thread (numpy's FFTs, einsums and solves
let the loop run meanwhile), and its result is sent back in. A decision that needs an
engine (Whisper, on its own thread already) yields `Awaited`: the coroutine is awaited on
the loop, the call's later inputs waiting for it just the same.

A decision decides what happens to the frames after it, so while one is computed the
call's later inputs (microphone frames, and frames sent, which the guard's reference
records) wait in `InOrder`, and are handled in the order they came once it is made: the
same inputs in the same order reach the same code, so every decision is the one taken
inline, and the state the worker reads is touched by nothing else meanwhile. A frame
waits for the computation (a few ms; at worst the inline time it replaces), never a
turn: calls without a decision pending go on at once, inline as before.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Generator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

log = logging.getLogger("hark.turns")

T = TypeVar("T")


@dataclass(frozen=True)
class Offload:
    """Work for a worker thread: `fn()`, its result sent back into the generator."""

    fn: Callable[[], Any]


@dataclass(frozen=True)
class Awaited:
    """Work that waits on something with a thread of its own (an engine): `await make()`
    on the loop, its result sent back into the generator."""

    make: Callable[[], Awaitable[Any]]


Job = Offload | Awaited
Steps = Generator[Job, Any, T]  # a decision: loop code between yields of its work
Input = Callable[[], Steps[None] | None]  # one input of a call: a plain call, or steps

# Two threads: one call's decision never waits behind another's for long, and the two
# cores this runs on are not both taken from the loop.
_WORKERS = ThreadPoolExecutor(max_workers=2, thread_name_prefix="hark-echo")


def run_here(steps: Steps[T]) -> T:
    """Every step on this thread, the offloaded work included (benches, offline replays,
    and a process with no event loop running); `Awaited` work in an event loop of its
    own, so not from inside a running one."""
    try:
        job = next(steps)
        while True:
            job = _step(steps, job)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


def _step(steps: Steps[Any], job: Job) -> Job:
    try:
        result = job.fn() if isinstance(job, Offload) else asyncio.run(_awaited(job))
    except Exception as exc:  # raised where the work was asked for, as inline
        return steps.throw(exc)
    return steps.send(result)


async def _awaited(job: Awaited) -> Any:
    return await job.make()


class InOrder:
    """A call's inputs (`handle`), each handled after the one before it has finished,
    its offloaded work included. `close` when the call ends: what waits is dropped, and
    a decision being computed is abandoned (its thread finishes; nothing uses it)."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._waiting: deque[Input] = deque()
        self._running = False  # an input is in hand (here, or its work on a thread)
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def busy(self) -> bool:
        """An input's decision is being computed off the loop: inputs now will wait."""
        return self._task is not None

    def handle(self, item: Input) -> None:
        """Handle `item` now, unless an earlier input is still in hand: then after it.
        Inline, an input's exception reaches the caller, as a direct call's would."""
        if self._closed:
            return
        self._waiting.append(item)
        if not self._running:
            self._drain(inline=True)

    def close(self) -> None:
        self._closed = True
        self._waiting.clear()
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self._running = False

    def _drain(self, *, inline: bool) -> None:
        """What waits, in order, here, until one yields work for a thread."""
        self._running = True
        try:
            while self._waiting and not self._closed:
                item = self._waiting.popleft()
                try:
                    job = self._start(item)
                except Exception:
                    if inline:
                        raise
                    log.exception("%s: an input failed", self._name)
                    continue
                if job is not None:
                    return  # `_finish` goes on once the work is done
        finally:
            if self._task is None:
                self._running = False

    def _start(self, item: Input) -> Steps[None] | None:
        """Run `item` up to its first offloaded work: then the task that finishes it is
        started and the steps returned; None when it finished here."""
        steps = item()
        if steps is None:
            return None
        try:
            job = next(steps)
        except StopIteration:
            return None
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop: nothing to keep free
            try:
                while True:
                    job = _step(steps, job)
            except StopIteration:
                return None
        self._task = loop.create_task(self._finish(steps, job), name=f"{self._name}-in-order")
        return steps

    async def _finish(self, steps: Steps[None], job: Job) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                try:
                    if isinstance(job, Awaited):
                        result = await job.make()
                    else:
                        result = await loop.run_in_executor(_WORKERS, job.fn)
                except asyncio.CancelledError:
                    steps.close()
                    raise
                except Exception as exc:
                    job = steps.throw(exc)
                else:
                    job = steps.send(result)
        except StopIteration:
            pass
        except Exception:
            log.exception("%s: an input failed", self._name)
        self._task = None
        self._drain(inline=False)
