"""Several llama.cpp contexts over one model, so one call's reply never waits for another's.

A llama.cpp context decodes one sequence at a time: with a single context shared by every
call, a reply waits until the reply before it has been generated to its last token (and
that reply's generator pauses whenever its first words are being spoken), so at six
talkers a question's first token came seconds late. Here each `Slot` is a context of its
own, driven by its own thread; the model file is memory-mapped, so the weights are in
memory once and a slot adds its KV cache and compute buffers (~110 MB for Gemma-3-270M
at n_ctx 2048).

The slots must not compute at the same time: llama.cpp's threads spin at their barriers,
and two contexts using every core at once slow each other down many times over. So every
step of work (a prompt's evaluation, one token) is taken under the `TurnLock`: a reply
still short of its first words goes first (its caller waits in silence; a reply already
being spoken has audio in hand), the others take turns token by token. A call's first
token then waits for at most one token step of the running replies, not for their ends,
and the replies already speaking are not slowed while it starts. (Plain turn-taking,
every step first come first served, made every concurrent reply's first words slower:
six talkers on two cores answered in 1.25-1.3 s p50 against 1.0 s with one context.)

A reply goes to the free slot whose last prompt shares the longest beginning with its
own (`SlotPool.acquire`): that context still holds the call's persona and history, which
llama.cpp's prefix reuse then does not evaluate again.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from server.engines.threaded import EngineWorker

T = TypeVar("T")
_END = object()


URGENT_STEPS = 8  # a reply's prompt and first tokens: enough for its first words


class TurnLock:
    """A lock handed over in arrival order, urgent askers first: a thread that releases
    it and asks again goes behind those already waiting (a plain Lock lets it take the
    lock straight back), and behind any urgent one (a reply still short of its first
    words: its caller hears nothing until they come, while a reply already speaking has
    seconds of audio in hand)."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._urgent: deque[object] = deque()
        self._waiting: deque[object] = deque()
        self._held = False

    def _next(self) -> object | None:
        if self._urgent:
            return self._urgent[0]
        return self._waiting[0] if self._waiting else None

    @contextlib.contextmanager
    def turn(self, urgent: bool = False) -> Iterator[None]:
        me = object()
        queue = self._urgent if urgent else self._waiting
        with self._changed:
            queue.append(me)
            while self._held or self._next() is not me:
                self._changed.wait()
            queue.popleft()
            self._held = True
        try:
            yield
        finally:
            with self._changed:
                self._held = False
                self._changed.notify_all()


def in_turns(
    steps: Iterator[T],
    lock: TurnLock,
    urgent_steps: int = URGENT_STEPS,
    step: Callable[[], contextlib.AbstractContextManager[object]] = contextlib.nullcontext,
) -> Iterator[T]:
    """`steps`, each `next` taken under `lock` (where llama.cpp does its work) and inside
    `step()` (the engine's set-up of that step: its threads), the first `urgent_steps`
    of them (the prompt's evaluation, the first tokens) as urgent; closing this generator
    closes `steps`."""
    taken = 0
    try:
        while True:
            with lock.turn(urgent=taken < urgent_steps), step():
                item = next(steps, _END)
            taken += 1
            if item is _END:
                return
            yield item  # type: ignore[misc]
    finally:
        close = getattr(steps, "close", None)
        if close is not None:
            close()


@dataclass(eq=False)
class Slot:
    """One llama.cpp context and the thread that drives it."""

    index: int
    worker: EngineWorker
    llm: Any = None  # llama_cpp.Llama once loaded
    scorer: Any = None  # its UtteranceScorer, made on the first tool decision
    last_prompt: str = ""  # what the context holds, as text


def shared_prefix(a: str, b: str) -> int:
    """Length of the common beginning of `a` and `b`."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


@dataclass
class SlotPool:
    """The free slots, handed out fairly: a reply waits only when every slot is busy,
    and waiting replies are served in arrival order."""

    slots: list[Slot]
    _free: list[Slot] = field(init=False)
    _waiting: deque[asyncio.Future[Slot]] = field(init=False, default_factory=deque)

    def __post_init__(self) -> None:
        self._free = list(self.slots)

    @property
    def busy(self) -> int:
        return len(self.slots) - len(self._free)

    async def acquire(self, prompt: str) -> Slot:
        if self._free and not self._waiting:
            slot = max(self._free, key=lambda s: (shared_prefix(s.last_prompt, prompt), -s.index))
            self._free.remove(slot)
            return slot
        waiter: asyncio.Future[Slot] = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release(waiter.result())  # handed over just as it was abandoned
            else:
                with contextlib.suppress(ValueError):
                    self._waiting.remove(waiter)
            raise

    def release(self, slot: Slot) -> None:
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(slot)
                return
        self._free.append(slot)

    @contextlib.asynccontextmanager
    async def use(self, prompt: str) -> Any:
        slot = await self.acquire(prompt)
        try:
            yield slot
        finally:
            self.release(slot)
