"""The caller's microphone over a WebSocket: `input_audio_buffer.append` events → the same
32 ms frames at 16 kHz that the WebRTC inbound track gives the session.

Each append is checked (base64, whole samples of `audio.input.format`), held to about
real time (a token bucket: `burst_s` seconds of audio ahead of the clock, refilled at one
second per second), decoded and resampled at once, then cut into frames on an audio clock
(`audio_end_ms` counts samples received, as over WebRTC). Frames are handed on by
`feed()`, which yields to the event loop every few frames, so a 15 s append never stalls
the other calls' 20 ms audio. What waits to be fed is bounded by the bucket.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import time
from collections import deque
from collections.abc import Callable

import numpy as np

from media.wire_audio import WireAudioError, WireDecoder, WireFormat
from server.call.ports import CallControlError

log = logging.getLogger("hark.input")

RATE = 16_000
FRAME_SAMPLES = 512  # 32 ms, what Silero takes
FRAMES_PER_YIELD = 4
SLACK_S = 0.005  # clock rounding: a client exactly at real time is never refused


class AppendedAudio:
    def __init__(
        self,
        on_frame: Callable[[np.ndarray, int], None],
        *,
        burst_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._on_frame = on_frame
        self._burst_s = burst_s
        self._clock = clock
        self._tokens = burst_s
        self._refilled_at = clock()
        self._decoder: WireDecoder | None = None
        self._pending: deque[np.ndarray] = deque()
        self._partial = np.zeros(0, dtype=np.int16)
        self._emitted = 0  # samples handed on as frames
        self.last_append_at: float | None = None

    @property
    def waiting(self) -> bool:
        """Decoded audio not yet handed on as frames."""
        return bool(self._pending)

    def append(self, audio: str, fmt: WireFormat) -> None:
        """Check and decode one append; raises `CallControlError` (nothing kept) if bad."""
        try:
            raw = base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise CallControlError(
                "invalid_audio", f"'audio' is not valid base64: {exc}", "audio"
            ) from exc
        if not raw:
            return
        if len(raw) % fmt.bytes_per_sample:
            raise CallControlError(
                "invalid_audio",
                f"{len(raw)} bytes is not a whole number of {fmt.bytes_per_sample}-byte samples",
                "audio",
            )
        seconds = fmt.duration_s(len(raw))
        self._refill()
        if seconds > self._tokens + SLACK_S:
            raise CallControlError(
                "input_audio_rate_exceeded",
                f"Audio is appended faster than real time: {seconds:.2f} s more would exceed "
                f"the allowance of {self._burst_s:g} s ahead of the clock; this append was "
                "dropped",
                "audio",
            )
        if self._decoder is None or self._decoder.format != fmt:
            self._decoder = WireDecoder(fmt, RATE)
        try:
            pcm = self._decoder.decode(raw)
        except WireAudioError as exc:
            raise CallControlError("invalid_audio", str(exc), "audio") from exc
        self._tokens -= seconds
        self.last_append_at = self._clock()
        if len(pcm):
            self._pending.append(pcm)

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self._burst_s, self._tokens + (now - self._refilled_at))
        self._refilled_at = now

    async def feed(self) -> None:
        """Hand every waiting sample on as frames, yielding to the loop between a few."""
        since_yield = 0
        while self._pending:
            chunk = self._pending.popleft()
            pcm = np.concatenate([self._partial, chunk]) if len(self._partial) else chunk
            full = len(pcm) // FRAME_SAMPLES * FRAME_SAMPLES
            self._partial = pcm[full:].copy()
            for offset in range(0, full, FRAME_SAMPLES):
                self._emitted += FRAME_SAMPLES
                try:
                    self._on_frame(pcm[offset : offset + FRAME_SAMPLES].copy(), self.audio_end_ms)
                except Exception:
                    log.exception("an appended frame failed")
                since_yield += 1
                if since_yield >= FRAMES_PER_YIELD:
                    since_yield = 0
                    await asyncio.sleep(0)

    @property
    def audio_end_ms(self) -> int:
        return self._emitted * 1000 // RATE

    def take_partial(self) -> np.ndarray:
        """The samples short of a whole frame (a manual commit takes them too)."""
        partial, self._partial = self._partial, np.zeros(0, dtype=np.int16)
        self._emitted += len(partial)
        return partial

    def clear(self) -> None:
        """Forget audio not yet handed on (`input_audio_buffer.clear`)."""
        self._pending.clear()
        self._partial = np.zeros(0, dtype=np.int16)
