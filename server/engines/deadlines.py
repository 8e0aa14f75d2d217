"""Which job an engine's thread runs next: the one whose caller runs out of audio first.

One engine thread (`EngineWorker`) serves every call of a worker process. Served in the
order asked, a call's first words waited behind the later sentences of other calls'
replies, whose listeners still had seconds of audio in hand: beside three replies being
spoken, a short reply's first audio from Piper came 858 ms p50 after it was asked (344 ms
served as here: tests/bench/tts_fairness.py). So a job carries a deadline, the moment
its caller would hear silence without it, and the thread takes the earliest one (EDF):
a reply's first clause is due at once, a later clause when the audio already queued for
that call is nearly played out (`audio_in_hand`), anything else when asked. Jobs asked
with no deadline are therefore served first come, first served among themselves, as
before, and a deferred job is never passed over once its deadline has come: a newer job
is due later than it.
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
from typing import Any

# A later clause is due this much before its caller's audio runs out: the time its own
# synthesis may take on a busy node.
MARGIN_S = 0.5

_due: ContextVar[float | None] = ContextVar("hark_engine_due", default=None)


@contextlib.contextmanager
def audio_in_hand(seconds: float, clock: Callable[[], float] = time.monotonic) -> Iterator[None]:
    """Engine jobs asked inside (by this task) are due when `seconds` of audio already
    queued for their caller have played, less `MARGIN_S`."""
    token = _due.set(clock() + max(0.0, seconds - MARGIN_S))
    try:
        yield
    finally:
        _due.reset(token)


def due() -> float | None:
    """The deadline of jobs asked now by this task (None: when asked)."""
    return _due.get()


class DeadlineExecutor(concurrent.futures.Executor):
    """One thread running submitted calls earliest deadline first (the submitting
    context's `audio_in_hand`, else the moment of submission)."""

    def __init__(self, name: str, clock: Callable[[], float] = time.monotonic) -> None:
        self._name = name
        self._clock = clock
        self._jobs: list[tuple[float, int, concurrent.futures.Future[Any], Callable[[], Any]]] = []
        self._order = itertools.count()
        self._ready = threading.Condition()
        self._thread: threading.Thread | None = None
        self._shut = False

    def submit(
        self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any
    ) -> concurrent.futures.Future[Any]:
        deadline = due()
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        with self._ready:
            if self._shut:
                raise RuntimeError(f"{self._name}: cannot submit after shutdown")
            job = (self._clock() if deadline is None else deadline, next(self._order), future)
            heapq.heappush(self._jobs, (*job, lambda: fn(*args, **kwargs)))
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name=self._name, daemon=True)
                self._thread.start()
            self._ready.notify()
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._ready:
            self._shut = True
            if cancel_futures:
                for _, _, future, _ in self._jobs:
                    future.cancel()
                self._jobs.clear()
            self._ready.notify()
            thread = self._thread
        if wait and thread is not None and thread is not threading.current_thread():
            thread.join()

    def _work(self) -> None:
        while True:
            with self._ready:
                while not self._jobs and not self._shut:
                    self._ready.wait()
                if not self._jobs:
                    return
                _, _, future, call = heapq.heappop(self._jobs)
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = call()
            except BaseException as exc:  # handed to the waiter, as ThreadPoolExecutor does
                future.set_exception(exc)
            else:
                future.set_result(result)
