"""A sideband: a second event channel on a live call (`GET /v1/realtime?call_id=…`).

A browser holds the call's audio over WebRTC while the app's backend joins the same call
over a WebSocket with its API key, to see everything the call says and steer it: update
the session, add items (tool outputs), create or cancel responses. Every event the call
sends goes to its transport and to each sideband alike; what a sideband sends goes through
its own `ClientEventDispatcher` to the same session. Only the answers to a sideband's own
request (its `error` events, `conversation.item.retrieved`) stay on that sideband.

Closing a sideband leaves the call alone; the call ending closes its sidebands, each with a
close frame naming why (`call ended: <reason>`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Any

from server.call.client_events import ClientEventDispatcher
from server.call.socket_writer import (
    CLOSE_GOING_AWAY,
    CLOSE_NORMAL,
    CLOSE_POLICY,
    MessageSocket,
    SocketWriter,
)
from server.protocol import events

if TYPE_CHECKING:
    from server.call.session import RealtimeSession

log = logging.getLogger("hark.sideband")

MAX_QUEUED_BYTES = 4 * 1024 * 1024
MAX_SIDEBANDS = 8  # per call


class _SidebandControl:
    """The call as a sideband's events see it: the session's own verbs, except that replies
    to this channel's requests are sent on this channel only."""

    def __init__(self, session: RealtimeSession, channel: SidebandChannel) -> None:
        self._session = session
        self._channel = channel

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)

    def send(self, event: dict[str, Any]) -> None:
        self._channel.send(event)

    def report_error(
        self,
        type_: str,
        code: str,
        message: str,
        *,
        param: str | None = None,
        event_id: str | None = None,
    ) -> None:
        self._channel.send(events.error(type_, code, message, param=param, event_id=event_id))
        self._session.count_error(code)


class SidebandChannel:
    kind = "sideband"

    def __init__(
        self, session: RealtimeSession, socket: MessageSocket, *, max_event_bytes: int
    ) -> None:
        self.session = session
        self._writer = SocketWriter(
            socket,
            name=f"{session.call_id}-sideband",
            max_bytes=MAX_QUEUED_BYTES,
            on_overflow=self._fell_behind,
        )
        self._dispatcher = ClientEventDispatcher(
            _SidebandControl(session, self),  # type: ignore[arg-type]
            max_event_bytes=max_event_bytes,
            call_id=session.call_id,
        )
        self._closing: asyncio.Task[None] | None = None
        self.closed = False

    def open(self) -> None:
        """Joined: the call's session as it is now, then every event the call sends."""
        self._writer.start()
        self.send(events.session_created(self.session.session_dict()))
        self.session.sidebands.append(self)

    async def receive(self, data: str | bytes) -> None:
        if self.closed:
            return
        if isinstance(data, bytes):
            self.send(
                events.error(
                    "invalid_request_error",
                    "invalid_event",
                    "Binary frames are not supported: send each event as a JSON text frame",
                )
            )
            self.session.count_error("invalid_event")
            return
        self._dispatcher.on_message(data)

    def send(self, event: dict[str, Any]) -> None:
        self._writer.send(json.dumps(event))

    def send_event(self, raw: str) -> None:
        self._writer.send(raw)

    async def close(self, reason: str | None = None) -> None:
        """The call ended (`reason` as the session closed it): say so and close."""
        code = CLOSE_GOING_AWAY if reason == "server_shutdown" else CLOSE_NORMAL
        await self.leave(code, f"call ended: {reason or 'hangup'}")

    async def leave(self, code: int = CLOSE_NORMAL, message: str = "") -> None:
        """This channel goes (its client closed it, or fell behind); the call stays."""
        if self.closed:
            return
        self.closed = True
        if self in self.session.sidebands:
            self.session.sidebands.remove(self)
        await self._writer.close(code, message)

    def _fell_behind(self) -> None:
        log.warning("call %s: a sideband stopped reading; closing it", self.session.call_id)
        self._closing = asyncio.create_task(self.leave(CLOSE_POLICY, "client not reading"))
