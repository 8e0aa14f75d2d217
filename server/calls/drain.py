"""Draining a node on SIGTERM: refuse new calls at once, let live ones finish, then end them.

A rolling restart or a scale-down sends SIGTERM. The node stops admitting immediately
(`503 server_draining`, and `/healthz` answers 503 `draining`, so the load balancer's
health check takes it out), its live calls go on for up to `HARK_DRAIN_TIMEOUT_S`, then
each remaining client is told with an `error` event `session_server_shutdown` before its
call is closed (a WebSocket with 1001). Only then does the process exit. A second SIGTERM
skips the wait.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from server.calls.manager import CallManager
from server.calls.runtime import Readiness

log = logging.getLogger("hark.drain")

END_REASON = "server_shutdown"  # the client's `error` event: `session_server_shutdown`
POLL_S = 0.2


class Drain:
    def __init__(
        self,
        readiness: Readiness,
        calls: Callable[[], CallManager | None],
        timeout_s: float,
        *,
        on_change: Callable[[], None] = lambda: None,
        on_done: Callable[[], None] = lambda: None,
    ) -> None:
        """`on_change`: the node's state changed (publish it); `on_done`: every call has
        ended, the process may exit."""
        self.readiness = readiness
        self._calls = calls
        self.timeout_s = timeout_s
        self._on_change = on_change
        self._on_done = on_done
        self._hurry = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def begin(self) -> None:
        """The signal handler: start draining, or (a second time) stop waiting."""
        if self.task is not None:
            log.info("drain: asked again, ending the remaining calls now")
            self._hurry.set()
            return
        self.readiness.draining = True
        self._on_change()
        self.task = asyncio.get_running_loop().create_task(self._run(), name="drain")

    def _live(self) -> int:
        calls = self._calls()
        return len(calls) if calls is not None else 0

    async def _run(self) -> None:
        started = time.monotonic()
        log.info(
            "drain: no new calls; waiting up to %.0f s for %d live call(s)",
            self.timeout_s,
            self._live(),
        )
        deadline = started + self.timeout_s
        while self._live() and not self._hurry.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                await asyncio.wait_for(self._hurry.wait(), min(POLL_S, left))
            except TimeoutError:
                pass
        await self._end_remaining()
        log.info("drain: done in %.1f s", time.monotonic() - started)
        self._on_done()

    async def _end_remaining(self) -> None:
        calls = self._calls()
        if calls is None:
            return
        ending = [session.end(END_REASON) for session in calls.live() if not session.closed]
        if ending:
            log.info("drain: ending %d call(s) with %s", len(ending), END_REASON)
            await asyncio.gather(*ending, return_exceptions=True)
