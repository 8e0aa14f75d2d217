"""How a call's events and audio travel: over WebRTC, a peer connection and its data channel.

A transport only moves things. Inbound it hands the session every 16 kHz frame of the
caller's microphone and every message on `oai-events`; outbound it carries the session's
paced audio track and its events. It knows nothing of turns, replies or history, so the
WebSocket transport (`server.call.websocket_transport`) stands in its place behind the
same session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack
from aiortc.sdp import SessionDescription

from media.decoder_queue import bound_decoder_queues
from media.inbound import InboundAudio
from media.jitter import shorten_audio_receive_delay
from media.opus_dtx import ask_for_dtx, wants_dtx
from media.outbound import OutboundAudioTrack, opus_dtx_packet, opus_silence_packet
from server.call.ports import CallControlError
from server.protocol.audio_format import AudioFormat

log = logging.getLogger("hark.transport")

EVENTS_CHANNEL = "oai-events"
MAX_PENDING_EVENTS = 256


class EventChannel(Protocol):
    """Something that carries the call's events to a client (a transport, a sideband)."""

    def send_event(self, raw: str) -> None: ...

    async def close(self, reason: str | None = None) -> None:
        """The call is over (`reason` as the session closed it)."""


class Transport(EventChannel, Protocol):
    """What a session needs of whatever carries its call."""

    kind: str  # "webrtc" or "websocket"

    @property
    def connection_state(self) -> str:
        """`new`, `connecting`, `connected`, `failed` or `closed`."""

    @property
    def last_audio_at(self) -> float | None:
        """Monotonic time of the last inbound audio (None before the first)."""

    def append_input(self, audio: str, fmt: AudioFormat) -> None:
        """`input_audio_buffer.append`: base64 audio in `fmt` (raises `CallControlError`
        where the transport carries audio otherwise, or the audio is bad)."""

    def take_partial_input(self) -> np.ndarray:
        """Appended samples short of a whole frame (a manual commit includes them)."""

    def clear_input(self) -> None:
        """Forget appended audio not yet listened to."""


class WebRtcTransport:
    """One aiortc peer connection: the caller's track in, `track` out, `oai-events` both ways.

    Events sent before the client opens its data channel are queued (bounded) and flushed
    when it opens, so `session.created` is never lost to a slow client.
    """

    kind = "webrtc"

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
        self._pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self._channel: Any = None
        self._pending: list[str] = []
        self._inbound: InboundAudio | None = None

    @property
    def peer_connection(self) -> RTCPeerConnection:
        """The peer connection, for `getStats()` (the operator's quality samples)."""
        return self._pc

    @property
    def connection_state(self) -> str:
        return str(self._pc.connectionState)

    @property
    def last_audio_at(self) -> float | None:
        """Silence fed for a sender gone quiet (DTX) does not count as audio."""
        return None if self._inbound is None else self._inbound.last_frame_monotonic

    async def negotiate(self, offer_sdp: str) -> str:
        """Apply the client's offer and return the answer SDP (all candidates included)."""
        pc = self._pc
        pc.on("datachannel", self._datachannel)
        pc.on("track", self._remote_track)
        pc.on("connectionstatechange", self._state_changed)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        shorten_audio_receive_delay(pc)  # the VAD sees each packet 20 ms after it, not 80
        bound_decoder_queues(pc)  # a starved decoder thread drops old packets, not memory
        pc.addTrack(self._track)
        await pc.setLocalDescription(await pc.createAnswer())
        if _sends_opus(pc.localDescription.sdp):
            self._track.silence_packet = opus_silence_packet()  # idle frames cost nothing
            if wants_dtx(offer_sdp):
                self._track.dtx_packet = opus_dtx_packet()  # and mostly go unsent
        return ask_for_dtx(pc.localDescription.sdp)  # a silent caller then costs little

    def send_event(self, raw: str) -> None:
        channel = self._channel
        if channel is None:
            if len(self._pending) < MAX_PENDING_EVENTS:
                self._pending.append(raw)
            return
        if channel.readyState == "open":
            channel.send(raw)

    def append_input(self, audio: str, fmt: AudioFormat) -> None:
        raise CallControlError(
            "unsupported_over_webrtc",
            "Over WebRTC, input audio comes from the microphone track, not from events",
        )

    def take_partial_input(self) -> np.ndarray:
        return np.zeros(0, dtype=np.int16)

    def clear_input(self) -> None:
        """The microphone track has no buffer of its own to clear."""

    async def close(self, reason: str | None = None) -> None:
        if self._inbound is not None:
            await self._inbound.stop()
        with contextlib.suppress(Exception):
            await self._pc.close()

    def _remote_track(self, track: MediaStreamTrack) -> None:
        if track.kind != "audio" or self._inbound is not None:
            return
        self._inbound = InboundAudio(track, on_frame=self._on_audio)
        self._inbound.start()

    def _datachannel(self, channel: Any) -> None:
        if channel.label != EVENTS_CHANNEL or self._channel is not None:
            return
        self._channel = channel
        channel.on("message", self._on_message)
        self._on_channel_open()
        for raw in self._pending:
            channel.send(raw)
        self._pending.clear()

    async def _state_changed(self) -> None:
        state = self._pc.connectionState
        log.info("call %s connection %s", self._name, state)
        if state in ("failed", "closed"):
            # Not awaited here: closing the call closes this peer connection.
            asyncio.get_running_loop().call_soon(self._on_failed, f"connection_{state}")


def _sends_opus(answer_sdp: str) -> bool:
    """The answer's audio goes out in Opus (its first audio codec is what aiortc sends)."""
    for media in SessionDescription.parse(answer_sdp).media:
        if media.kind == "audio" and media.rtp.codecs:
            return media.rtp.codecs[0].mimeType.lower() == "audio/opus"
    return False
