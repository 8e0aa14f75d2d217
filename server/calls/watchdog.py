"""Ends calls that overstay: too long, silent too long, or never connected.

One task per node looks at every live call a few times a second (cheap: a few
attribute reads per call) instead of one timer task per call. The client is told why
with an `error` event before the call is closed with the same reason:

- `max_duration`: open longer than `HARK_MAX_CALL_DURATION`;
- `idle_timeout`: connected but no inbound audio frame for `HARK_IDLE_TIMEOUT` seconds
  (a browser sends audio even when muted, so silence on the wire means the client is gone);
- `ice_timeout`: not connected `HARK_ICE_TIMEOUT` seconds after the offer (the session
  itself checks once; this is the backstop that also catches a connection that dropped).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from server.call.session import RealtimeSession
    from server.calls.manager import CallManager

log = logging.getLogger("hark.watchdog")


class CallWatchdog:
    def __init__(
        self,
        calls: CallManager,
        *,
        max_duration_s: float,
        idle_timeout_s: float,
        ice_timeout_s: float,
        on_connected: Callable[[RealtimeSession], None] | None = None,
    ) -> None:
        self.calls = calls
        self.max_duration_s = max_duration_s
        self.idle_timeout_s = idle_timeout_s
        # The session's own check fires at the bound; this one a little after, as a backstop.
        self.ice_timeout_s = ice_timeout_s + 2.0
        self.on_connected = on_connected
        limits = [x for x in (max_duration_s, idle_timeout_s, ice_timeout_s) if x > 0]
        self.tick_s = max(0.1, min([1.0, *(x / 5 for x in limits)]))
        self._connected_at: dict[str, float] = {}
        self._ending: dict[str, asyncio.Task[None]] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.calls.on_call_ended.append(self._forget)
        self._task = asyncio.create_task(self._run(), name="call-watchdog")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def _forget(self, session: RealtimeSession) -> None:
        self._connected_at.pop(session.call_id, None)
        self._ending.pop(session.call_id, None)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.tick_s)
            try:
                self.check(time.time(), time.monotonic())
            except Exception:
                log.exception("watchdog check failed")

    def check(self, wall: float, mono: float) -> None:
        for session in self.calls.live():
            if session.closed or session.call_id in self._ending:
                continue
            reason = self._verdict(session, wall, mono)
            if reason is not None:
                self._ending[session.call_id] = session.end(reason)

    def _verdict(self, session: RealtimeSession, wall: float, mono: float) -> str | None:
        age = wall - session.created_at
        if self.max_duration_s > 0 and age > self.max_duration_s:
            return "max_duration"
        state = session.transport.connection_state
        connected_at = self._connected_at.get(session.call_id)
        if state == "connected" and connected_at is None:
            connected_at = self._connected_at[session.call_id] = mono
            if self.on_connected is not None:
                self.on_connected(session)
        if connected_at is None:
            return "ice_timeout" if self.ice_timeout_s > 0 and age > self.ice_timeout_s else None
        heard = max(connected_at, session.transport.last_audio_at or 0.0)
        if self.idle_timeout_s > 0 and mono - heard > self.idle_timeout_s:
            return "idle_timeout"
        return None
