"""Where translated speech goes: `session.output_audio.delta` events, or a WebRTC track.

Over a WebSocket the speech is sent as it is synthesised (24 kHz PCM16, base64, at most
200 ms a delta) and the client queues it; over WebRTC it is pushed on the paced outbound
track, one segment after another.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable

import numpy as np

from media.outbound import OutboundAudioTrack
from media.wire_audio import WireEncoder, WireFormat
from server.protocol.events import event

OUTPUT_RATE = 24_000
DELTA_SAMPLES = OUTPUT_RATE // 5  # 200 ms


class EventAudioOut:
    """Translated speech as `session.output_audio.delta` events."""

    def __init__(self, send: Callable[[str], None]) -> None:
        self._send = send
        self._encoder = WireEncoder(WireFormat("pcm16", OUTPUT_RATE))
        self._elapsed_ms = 0

    def begin(self, segment_id: str) -> None:
        self._encoder = WireEncoder(WireFormat("pcm16", OUTPUT_RATE))

    def play(self, pcm: np.ndarray, rate: int, elapsed_ms: int) -> None:
        self._elapsed_ms = elapsed_ms
        self._deliver(self._encoder.encode(pcm, rate))

    async def end(self) -> None:
        self._deliver(self._encoder.flush())

    def _deliver(self, data: bytes) -> None:
        step = DELTA_SAMPLES * 2
        for offset in range(0, len(data), step):
            piece = data[offset : offset + step]
            delta = event(
                "session.output_audio.delta",
                delta=base64.b64encode(piece).decode("ascii"),
                format="pcm16",
                sample_rate=OUTPUT_RATE,
                channels=1,
                elapsed_ms=self._elapsed_ms,
            )
            self._send(json.dumps(delta))


class TrackAudioOut:
    """Translated speech on the call's outbound RTP track, played out in order."""

    def __init__(self, track: OutboundAudioTrack) -> None:
        self._track = track

    def begin(self, segment_id: str) -> None:
        self._track.begin_response(segment_id)

    def play(self, pcm: np.ndarray, rate: int, elapsed_ms: int) -> None:
        self._track.push(pcm, rate)

    async def end(self) -> None:
        self._track.end_response()
        await self._track.wait_drained()
