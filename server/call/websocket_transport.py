"""How a call's events and audio travel over one WebSocket (OpenAI Realtime's WebSocket API).

Events in: each text frame goes to the session's client-event dispatcher, exactly as a
data channel message would; a binary frame is answered with an `error`. Audio in:
`input_audio_buffer.append` reaches `append_input()` through the dispatcher, and its
frames go to the session's turn taking like the WebRTC microphone's (`AppendedAudio`).

Audio out: the session's paced `OutboundAudioTrack` is pumped here. Every 20 ms frame of
a reply is converted to `audio.output.format` and sent as base64 in
`response.output_audio.delta` events: a reply's first frame at once, then 100 ms per
delta, up to `SEND_AHEAD_S` ahead of real time so the client's own playout buffer never
runs dry. The silence between replies is never sent. The server's playout position (what
heard-only text is cut at) is therefore what it has *sent*; a client refines it with
`conversation.item.truncate` once it knows what it played.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import time
from collections.abc import Callable
from typing import Protocol

import numpy as np
from aiortc.mediastreams import MediaStreamError

from media.outbound import RATE as TRACK_RATE
from media.outbound import OutboundAudioTrack, OutboundFrame
from media.wire_audio import WireEncoder
from server.call.appended_audio import AppendedAudio
from server.call.replies import CallReplies
from server.call.socket_writer import (
    CLOSE_GOING_AWAY,
    CLOSE_NORMAL,
    CLOSE_POLICY,
    MessageSocket,
    SocketWriter,
)
from server.protocol import events
from server.protocol.audio_format import AudioFormat
from server.protocol.session_config import SessionConfig

log = logging.getLogger("hark.websocket")

SEND_AHEAD_S = 0.2
DELTA_FRAMES = 5  # 100 ms of audio per delta after the first
# ~80 s of 24 kHz PCM16 audio in base64: far more than a reading client ever has queued.
MAX_QUEUED_BYTES = 8 * 1024 * 1024
# Ends that are the server going away rather than the call simply being over.
GOING_AWAY = ("server_shutdown",)


class WebSocketHost(Protocol):
    """What the transport reads of its session beyond the callbacks a WebRTC one gets."""

    @property
    def config(self) -> SessionConfig: ...

    @property
    def replies(self) -> CallReplies: ...

    def report_error(self, type_: str, code: str, message: str) -> None: ...


class WebSocketTransport:
    """One WebSocket: JSON events both ways, base64 audio inside them."""

    kind = "websocket"

    def __init__(
        self,
        track: OutboundAudioTrack,
        *,
        name: str,
        on_audio: Callable[[np.ndarray, int], None],
        on_message: Callable[[str | bytes], None],
        on_channel_open: Callable[[], None],
        on_failed: Callable[[str], None],
    ) -> None:
        self._track = track
        self._name = name
        self._on_audio = on_audio
        self._on_message = on_message
        self._on_channel_open = on_channel_open
        self._on_failed = on_failed
        self._host: WebSocketHost | None = None
        self._input = AppendedAudio(on_audio, burst_s=0.0)
        self._writer: SocketWriter | None = None
        self._state = "new"
        self._last_frame_at: float | None = None
        self._pump: asyncio.Task[None] | None = None
        self._feeding: asyncio.Task[None] | None = None
        # Frames of a reply not yet sent as a delta, and the reply they belong to.
        self._batch: list[np.ndarray] = []
        self._batch_response: str | None = None
        self._encoder: WireEncoder | None = None
        self._started: set[str] = set()  # replies whose first delta went out
        track.on_cleared = self._on_cleared

    def bind(self, host: WebSocketHost, *, append_burst_s: float) -> None:
        """The session: its output format, its replies (whose item a delta belongs to), its
        error reporting; and how far ahead of real time appended audio may run."""
        self._host = host
        self._input = AppendedAudio(self._on_audio, burst_s=append_burst_s)

    # ---- what the session and the watchdog read ------------------------------------------

    @property
    def connection_state(self) -> str:
        return self._state

    @property
    def last_audio_at(self) -> float | None:
        """The last appended audio or event from the client: either keeps the call alive."""
        appended = self._input.last_append_at
        if appended is None or self._last_frame_at is None:
            return appended or self._last_frame_at
        return max(appended, self._last_frame_at)

    # ---- the socket ------------------------------------------------------------------------

    def open(self, socket: MessageSocket) -> None:
        """The upgrade succeeded: start sending (`session.created` first) and pumping."""
        self._writer = SocketWriter(
            socket,
            name=self._name,
            max_bytes=MAX_QUEUED_BYTES,
            on_overflow=lambda: self._on_failed("client_not_reading"),
        )
        self._writer.start()
        self._state = "connected"
        self._last_frame_at = time.monotonic()
        self._on_channel_open()
        self._pump = asyncio.create_task(self._pump_audio(), name=f"{self._name}-audio-out")

    async def receive(self, data: str | bytes) -> None:
        """One frame from the client; returns once its audio (if any) has been listened to,
        so an `input_audio_buffer.commit` after an append sees all of it."""
        self._last_frame_at = time.monotonic()
        if isinstance(data, bytes):
            self._report(
                "invalid_event",
                "Binary frames are not supported: send each event as a JSON text frame "
                "(audio as base64 in input_audio_buffer.append)",
            )
            return
        self._on_message(data)
        feeding = self._feeding
        if feeding is not None and not feeding.done():
            await asyncio.shield(feeding)

    def send_event(self, raw: str) -> None:
        if self._writer is not None:
            self._writer.send(raw)

    async def close(self, reason: str | None = None) -> None:
        self._state = "closed"
        for task in (self._pump, self._feeding):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._writer is not None:
            code = CLOSE_GOING_AWAY if reason in GOING_AWAY else CLOSE_NORMAL
            if reason == "client_not_reading":
                code = CLOSE_POLICY
            await self._writer.close(code, f"call ended: {reason or 'hangup'}")

    def _report(self, code: str, message: str) -> None:
        if self._host is not None:
            self._host.report_error("invalid_request_error", code, message)

    # ---- audio in --------------------------------------------------------------------------

    def append_input(self, audio: str, fmt: AudioFormat) -> None:
        """`input_audio_buffer.append`: checked now (raises `CallControlError`), listened to
        in order by one task."""
        self._input.append(audio, fmt.wire)
        if self._input.waiting and (self._feeding is None or self._feeding.done()):
            self._feeding = asyncio.create_task(self._input.feed(), name=f"{self._name}-audio-in")

    def take_partial_input(self) -> np.ndarray:
        return self._input.take_partial()

    def clear_input(self) -> None:
        self._input.clear()

    # ---- audio out -------------------------------------------------------------------------

    async def _pump_audio(self) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                self._take(await self._track.next_frame())

    def _take(self, frame: OutboundFrame) -> None:
        response_id = frame.response_id
        if response_id is None:  # silence: a gap, a pause, or no reply at all
            self._flush()
            return
        if response_id != self._batch_response:
            # A new reply (the last one ended or was cut, so nothing is held of it).
            self._flush()
            self._encoder = None
            self._batch_response = response_id
        self._batch.append(frame.pcm)
        if frame.last or len(self._batch) >= DELTA_FRAMES or response_id not in self._started:
            self._flush(end=frame.last)

    def _on_cleared(self, response_id: str) -> None:
        """The reply is being cut: what was already taken from the track goes out before
        the reply's end is announced (the track counts it as played)."""
        if response_id == self._batch_response:
            self._flush(end=True)

    def _flush(self, *, end: bool = False) -> None:
        response_id = self._batch_response
        if response_id is None or (not self._batch and not end):
            return
        host = self._host
        if host is None:
            self._batch.clear()
            return
        fmt = host.config.output_format.wire
        if self._encoder is None or self._encoder.format != fmt:
            self._encoder = WireEncoder(fmt)
        data = b""
        if self._batch:
            data = self._encoder.encode(np.concatenate(self._batch), TRACK_RATE)
        if end:
            data += self._encoder.flush()
            self._batch_response = None
            self._started.discard(response_id)
        else:
            self._started.add(response_id)
        self._batch.clear()
        run = host.replies.current
        item_id = run.item.id if run is not None and run.id == response_id else None
        if data and item_id is not None:
            self.send_event(json.dumps(audio_delta(response_id, item_id, data)))


def audio_delta(response_id: str, item_id: str, data: bytes) -> events.Event:
    return events.event(
        "response.output_audio.delta",
        response_id=response_id,
        item_id=item_id,
        output_index=0,
        content_index=0,
        delta=base64.b64encode(data).decode("ascii"),
    )
