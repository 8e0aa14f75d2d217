"""Hand freed memory back to the system once a node has no call left.

A call's media runs on threads of its own (aiortc's decoder, the encoder pool), and
glibc gives busy threads malloc arenas of their own; after a ramp of calls those arenas
hold hundreds of megabytes of freed blocks that glibc keeps for reuse, so RSS never
comes down. `malloc_trim(0)` returns every free page of every arena to the kernel. It
runs when the last call has ended (after a short pause, so the calls' threads have
exited), off the event loop, and only where the C library has it (glibc).
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
from collections.abc import Callable, Sized
from typing import Any, Protocol

log = logging.getLogger("hark.memory")

SETTLE_S = 2.0


def _libc_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None  # not glibc (musl, macOS): nothing to trim
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim  # type: ignore[no-any-return]


MALLOC_TRIM = _libc_trim()


class CallsEnding(Sized, Protocol):
    on_call_ended: list[Callable[[Any], None]]


def trim_now() -> bool:
    """Return free heap pages to the kernel now; False where the C library can't."""
    return MALLOC_TRIM is not None and bool(MALLOC_TRIM(0))


class IdleMemoryRelease:
    """Trims the heap `SETTLE_S` after the node's last call ends (once per idle spell)."""

    def __init__(self, calls: CallsEnding, settle_s: float = SETTLE_S) -> None:
        self._calls = calls
        self._settle_s = settle_s
        self._pending: asyncio.Task[None] | None = None
        self.trims = 0
        calls.on_call_ended.append(self._ended)

    def _ended(self, _session: object) -> None:
        if MALLOC_TRIM is None or len(self._calls) or self._pending is not None:
            return
        self._pending = asyncio.get_running_loop().create_task(self._trim(), name="malloc-trim")

    async def _trim(self) -> None:
        try:
            await asyncio.sleep(self._settle_s)
            if len(self._calls) == 0:
                await asyncio.to_thread(trim_now)
                self.trims += 1
                log.debug("no calls left: freed heap returned to the system")
        finally:
            self._pending = None
