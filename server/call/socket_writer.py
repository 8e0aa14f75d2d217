"""The outbound side of a WebSocket event channel: one task sends, in order, never blocking.

The session emits events synchronously (a reply's deltas, a barge-in's `response.done`),
so they are queued here and a single task writes them to the socket. The queue is bounded
in bytes: a client that stops reading while the call goes on would otherwise hold the
whole call's audio in memory. Past the bound the channel is closed (1008, "client not
reading") rather than dropping events, which would leave the client with a broken
history.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Protocol

log = logging.getLogger("hark.socket")

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
DRAIN_TIMEOUT_S = 2.0
MAX_REASON_BYTES = 120  # a close frame's reason must fit in 123 bytes


class MessageSocket(Protocol):
    """What a channel needs of a WebSocket (aiohttp's `WebSocketResponse` fits)."""

    def send_str(self, data: str) -> Awaitable[None]: ...

    def close(self, *, code: int = ..., message: bytes = ...) -> Awaitable[bool]: ...


class SocketWriter:
    def __init__(
        self,
        socket: MessageSocket,
        *,
        name: str,
        max_bytes: int,
        on_overflow: Callable[[], None],
    ) -> None:
        self._socket = socket
        self._name = name
        self._max_bytes = max_bytes
        self._on_overflow = on_overflow
        self._queue: deque[str] = deque()
        self._bytes = 0
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closed = False
        self._task: asyncio.Task[None] | None = None

    @property
    def queued_bytes(self) -> int:
        return self._bytes

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"{self._name}-writer")

    def send(self, raw: str) -> bool:
        """Queue one message; False if the channel is closed or the client fell behind."""
        if self._closed:
            return False
        if self._bytes + len(raw) > self._max_bytes:
            log.warning("%s: client not reading (%d bytes queued)", self._name, self._bytes)
            self._closed = True
            self._queue.clear()
            self._bytes = 0
            self._on_overflow()
            return False
        self._queue.append(raw)
        self._bytes += len(raw)
        self._idle.clear()
        self._wake.set()
        return True

    async def _run(self) -> None:
        try:
            while True:
                while self._queue:
                    raw = self._queue.popleft()
                    self._bytes -= len(raw)
                    await self._socket.send_str(raw)
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the peer went away mid-write
            log.debug("%s: send failed: %s", self._name, exc)
            self._closed = True
            self._queue.clear()
            self._bytes = 0
            self._idle.set()

    async def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        """Send what is queued (for at most a couple of seconds), then close the socket."""
        if self._task is not None and not self._task.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), DRAIN_TIMEOUT_S)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._closed = True
        self._queue.clear()
        self._bytes = 0
        message = reason.encode()[:MAX_REASON_BYTES]
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._socket.close(code=code, message=message), DRAIN_TIMEOUT_S)
