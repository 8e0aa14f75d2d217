"""When a call next needs audio, and a worker thread that serves the soonest need first.

One Piper voice (one thread) speaks for every call of a worker process. Served first
come, first served, a call's first clause (its caller hears nothing until it is spoken)
waited behind the later clauses of the other calls, which had seconds of their replies'
audio queued in hand. So each clause is submitted with the moment its synthesis should
start (`needed_by`: when its call's audio runs out, less `START_AHEAD_S` to speak it,
read from the reply set around the synthesis by `replying`: a context variable, so the
engines' `synthesize` signatures stay as they are), and `EarliestFirstExecutor` runs the
job due soonest. A first clause is due when it is submitted: it goes ahead of a clause
whose call still has seconds of audio to play, but not ahead of one whose call is about
to fall silent; first clauses among themselves keep their order of arrival.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import heapq
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any, Protocol

# A clause is due this long before its call's audio runs out: about what Piper takes for
# a clause on a busy node, so it is spoken before the silence would begin.
START_AHEAD_S = 0.5


class ReplyAudio(Protocol):
    """A reply being spoken: when the audio handed on so far will have played out."""

    @property
    def audio_until(self) -> float | None: ...  # time.monotonic(); None: nothing yet


_REPLY: ContextVar[ReplyAudio | None] = ContextVar("hark_reply_audio", default=None)


def needed_by() -> float | None:
    """When synthesis for the calling reply should start (time.monotonic()): its audio
    runs out `START_AHEAD_S` later. None: now (nothing of it plays yet)."""
    reply = _REPLY.get()
    until = None if reply is None else reply.audio_until
    return None if until is None else until - START_AHEAD_S


@contextlib.contextmanager
def replying(reply: ReplyAudio | None) -> Iterator[None]:
    """Synthesis started in this block is for `reply` (`needed_by`)."""
    token = _REPLY.set(reply)
    try:
        yield
    finally:
        _REPLY.reset(token)


Job = tuple[float, int, concurrent.futures.Future[Any], Callable[[], Any]]


class EarliestFirstExecutor:
    """One thread running submitted calls, the earliest deadline first (ties: in order of
    submission). A call without a deadline is due when submitted."""

    def __init__(self, name: str, clock: Callable[[], float] = time.monotonic) -> None:
        self._name = name
        self._clock = clock
        self._heap: list[Job] = []
        self._order = itertools.count()
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopped = False

    def submit(
        self, fn: Callable[[], Any], deadline: float | None = None
    ) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        due = self._clock() if deadline is None else deadline
        with self._changed:
            if self._stopped:
                raise RuntimeError(f"the {self._name} worker has stopped")
            heapq.heappush(self._heap, (due, next(self._order), future, fn))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._work, name=f"hark-{self._name}", daemon=True
                )
                self._thread.start()
            self._changed.notify()
        return future

    def _work(self) -> None:
        while True:
            with self._changed:
                while not self._heap and not self._stopped:
                    self._changed.wait()
                if self._stopped:
                    return
                _, _, future, fn = heapq.heappop(self._heap)
            if not future.set_running_or_notify_cancel():
                continue  # cancelled while it waited
            try:
                result = fn()
            except BaseException as exc:
                future.set_exception(exc)
            else:
                future.set_result(result)

    def shutdown(self) -> None:
        with self._changed:
            self._stopped = True
            pending = [job[2] for job in self._heap]
            self._heap.clear()
            self._changed.notify_all()
        for future in pending:
            future.cancel()
