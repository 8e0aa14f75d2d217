"""The assistant's voice: a paced 48 kHz track with clear, pause, resume and playout position.

aiortc's RTCRtpSender calls `recv()` in a loop and sends whatever it returns at once, so
the track itself must keep real time: frame n is due at start + n * 20 ms. A late event
loop sends immediately and catches up, so the stream never drifts; but when it is late
with nothing to say, the missed silence is skipped (`pts` jumps) rather than sent as a
burst (and a reply, too, once more than `MAX_BURST_FRAMES` late: no backlog of stale
frames goes out), which would make the browser's jitter buffer grow for a while (204 ms instead of
~110 ms after a 100 ms stall: tests/bench/browser_receive_delay.py). Silence fills every
gap (idle, paused, cleared, or TTS running behind) because a stalled RTP stream makes
browsers' jitter buffers misbehave.

Barge-in needs two numbers this module owns: what was actually sent of the current
response (`playout_ms`; `client_played_ms` less what a WebSocket client only buffered, to
truncate the assistant's text to what the user heard) and an instant stop (`clear()`,
effective at the very next frame).

The same track feeds a WebSocket client (`next_frame()`, which says whose audio each frame
holds): such a client buffers and plays the audio itself, so a response's frames may be
handed out up to `send_ahead_s` before they are due, and the gaps between replies are
never sent at all.
"""

from __future__ import annotations

import asyncio
import fractions
import functools
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Literal

import av
import numpy as np
from aiortc.codecs.opus import OpusEncoder
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from media.pacing import PACING, PacingSlip
from media.resample import Resampler

log = logging.getLogger(__name__)

RATE = 48000
FRAME_SAMPLES = 960  # 20 ms, what Opus packs per RTP packet
FRAME_SECONDS = FRAME_SAMPLES / RATE
TIME_BASE = fractions.Fraction(1, RATE)
SAMPLES_PER_MS = RATE // 1000
LATE_RESYNC_FRAMES = 2
# A loop later than this with a reply to send skips the missed slots rather than send
# them back to back: a client's jitter buffer absorbs a 200 ms burst, not a 2 s one.
MAX_BURST_FRAMES = 10
# Frames of silence still encoded after a response (and at the start of the stream)
# before the cached silence packet takes over: the encoder's lookahead drains the end of
# the reply, and its timestamps are anchored at pts 0 as aiortc expects.
SILENCE_HANGOVER_FRAMES = 10
# With DTX (the client's offer says `usedtx=1`), an idle stream after the hangover is one
# 1-byte packet per 400 ms, as libopus's own DTX sends, and nothing in between.
DTX_INTERVAL_FRAMES = 20


# Every gap's frame: one read-only array, not a new one 50 times a second per call.
_SILENCE = np.zeros(FRAME_SAMPLES, dtype=np.int16)
_SILENCE.setflags(write=False)


@functools.cache
def opus_silence_packet() -> bytes:
    """What aiortc's own Opus encoder makes of 20 ms of digital silence once settled (3
    bytes): sent as is, an idle call costs no encoding, no encoder thread hop and no
    pure-Python audio level per frame in RTCRtpSender."""
    encoder = OpusEncoder()
    zeros = np.zeros((1, FRAME_SAMPLES), dtype=np.int16)
    packets: list[bytes] = []
    for n in range(SILENCE_HANGOVER_FRAMES):
        frame = av.AudioFrame.from_ndarray(zeros, format="s16", layout="mono")
        frame.sample_rate, frame.time_base, frame.pts = RATE, TIME_BASE, n * FRAME_SAMPLES
        packets.extend(encoder.encode(frame)[0])
    return packets[-1]


def opus_dtx_packet() -> bytes:
    """A DTX packet in the same configuration: the silence packet's TOC byte with no frame
    data. Receivers take a packet of two bytes or less as "silence goes on" (WebRTC's
    NetEq plays comfort noise through the gap instead of concealing a loss)."""
    return opus_silence_packet()[:1]


class _SampleQueue:
    """FIFO of int16 samples kept as the pushed chunks, so a push never copies the backlog."""

    def __init__(self) -> None:
        self._chunks: deque[np.ndarray] = deque()
        self._offset = 0  # samples already taken from the first chunk
        self.size = 0

    def append(self, pcm: np.ndarray) -> None:
        if len(pcm):
            self._chunks.append(pcm)
            self.size += len(pcm)

    def take(self, n: int) -> np.ndarray:
        """Up to `n` samples from the front."""
        parts = []
        want = n
        while want and self._chunks:
            chunk = self._chunks[0]
            part = chunk[self._offset : self._offset + want]
            parts.append(part)
            want -= len(part)
            self._offset += len(part)
            if self._offset == len(chunk):
                self._chunks.popleft()
                self._offset = 0
        self.size -= n - want
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)

    def clear(self) -> None:
        self._chunks.clear()
        self._offset = 0
        self.size = 0


@dataclass(frozen=True)
class OutboundFrame:
    """One 20 ms frame as the track hands it out."""

    pcm: np.ndarray  # a gap's silence is one shared read-only array
    response_id: str | None  # whose audio it holds; None for silence filling a gap
    last: bool = False  # the response's audio ends with this frame


class OutboundAudioTrack(MediaStreamTrack):
    """20 ms mono s16 frames at 48 kHz; one response at a time.

    Lifecycle of a response: `begin_response(id)`, `push(...)` any number of times,
    `end_response()`, then `await wait_drained()`. Audio pushed when no response is open
    (before `begin_response`, or after `end_response`/`clear`) is dropped: a TTS task
    still finishing after a barge-in can never leak stale speech.

    `on_playback_started(response_id)` and `on_playback_stopped(response_id)` are called
    from `recv()`; `clear()` never calls `on_playback_stopped`. `on_frame_sent(pcm, sent_at)`
    gets every frame `recv()` returns, silence included, with the track clock's time: the
    echo canceller's reference of exactly what the client will play. `on_cleared(response_id)`
    is called by `clear()` before anything is dropped, so a consumer holding frames of that
    response (a WebSocket batching them) can send them before the response's end is told.
    """

    kind = "audio"

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        resync_silence: bool = True,
        send_ahead_s: float = 0.0,
        pacing: PacingSlip = PACING,
    ) -> None:
        """`clock` is injectable so tests can play a late event loop without waiting;
        `resync_silence=False` keeps every slot however late (tests with such clocks).
        `send_ahead_s`: how far ahead of real time response audio may be handed out (0 for
        RTP, which the client plays as it arrives). `pacing`: where each frame's lateness
        is noted (the node's load monitor reads the process-wide tally)."""
        super().__init__()
        self._pacing = pacing
        self._clock = clock
        self._resync_silence = resync_silence
        self._send_ahead_s = send_ahead_s
        self.on_playback_started: Callable[[str], None] | None = None
        self.on_playback_stopped: Callable[[str], None] | None = None
        self.on_frame_sent: Callable[[np.ndarray, float], None] | None = None
        self.on_cleared: Callable[[str], None] | None = None
        self._resampler = Resampler(RATE)
        self._queue = _SampleQueue()
        self._paused = False
        self._response_id: str | None = None
        self._open = False  # push() accepted: between begin_response and end_response/clear
        self._active = False  # a response whose audio is not yet fully sent or cleared
        self._announced = False  # on_playback_started fired for this response
        self._played = 0  # samples of the current response sent
        self._ahead_at_pause = 0  # of those, sent ahead of their time when paused
        self._drained = asyncio.Event()
        self._drained.set()
        self._start: float | None = None
        self._frames = 0
        self._stop_requested = False
        self.silenced_at: float | None = None
        self.skipped_late_frames = 0  # reply slots skipped because the loop was that late
        # The encoded form of a silent frame in the negotiated codec (the transport sets
        # it: `opus_silence_packet()`); None encodes every frame.
        self.silence_packet: bytes | None = None
        # Set (`opus_dtx_packet()`) when the client asked for DTX: idle slots then mostly
        # send nothing, and one such packet every `DTX_INTERVAL_FRAMES`.
        self.dtx_packet: bytes | None = None
        self.frames_not_sent = 0  # idle slots left off the wire (DTX)
        self._encode_left = SILENCE_HANGOVER_FRAMES
        self._idle_packets = 0  # idle slots since the hangover ended

    # Properties

    @property
    def response_id(self) -> str | None:
        """The latest response begun; kept after it ends, so `playout_ms` stays readable."""
        return self._response_id

    @property
    def active(self) -> bool:
        """A response is open or still has audio to send."""
        return self._active

    @property
    def playout_ms(self) -> int:
        """Milliseconds of the current response's audio handed to aiortc so far."""
        return self._played // SAMPLES_PER_MS

    @property
    def client_played_ms(self) -> int:
        """Of the current response, what a client that plays each frame when it is due
        had played by now, or by the pause while paused: `playout_ms` less what was sent
        ahead of its time (a WebSocket client's buffer; nothing over RTP)."""
        ahead = self._ahead_at_pause if self._paused else self._ahead_samples()
        return max(0, self._played - ahead) // SAMPLES_PER_MS

    def _ahead_samples(self) -> int:
        if not self._send_ahead_s or self._start is None:
            return 0
        due = int((self._clock() - self._start) / FRAME_SECONDS + 1e-6) + 1  # due by now
        return min(self._played, max(0, self._frames - due) * FRAME_SAMPLES)

    @property
    def queued_ms(self) -> int:
        return self._queue.size // SAMPLES_PER_MS

    @property
    def playing(self) -> bool:
        """Response audio is going out now: not paused and something queued."""
        return not self._paused and self._queue.size > 0

    @property
    def paused(self) -> bool:
        return self._paused

    # Responses

    def begin_response(self, response_id: str) -> None:
        """Start a new response; anything left of the previous one is dropped."""
        if self._queue.size:
            log.warning(
                "response %s began with %d ms of %s unsent; dropped",
                response_id,
                self.queued_ms,
                self._response_id,
            )
        self._discard()
        self._drained.set()  # wake anyone waiting on the superseded response
        self._drained = asyncio.Event()
        self._response_id = response_id
        self._open = True
        self._active = True
        self._announced = False
        self._played = 0
        self._paused = False

    def push(self, pcm: np.ndarray, sample_rate: int) -> None:
        """Queue int16 mono PCM at any rate for the open response (non-blocking)."""
        if not self._open:
            log.debug("dropped %d samples pushed with no open response", len(pcm))
            return
        self._queue.append(self._resampler.pcm(pcm, sample_rate))

    def end_response(self) -> None:
        """No more audio for this response; what is queued still plays out."""
        if not self._open:
            return
        self._open = False
        self._queue.append(self._resampler.flush())
        if not self._announced and self._queue.size == 0:
            self._finish()  # nothing was ever played: no started/stopped pair

    def wait_drained(self) -> Coroutine[Any, Any, Literal[True]]:
        """Await: done once the current response has ended and been sent, or was cleared.

        A plain function returning the awaitable, so it binds to the response current at
        the call, even if the awaiting task only starts after the next `begin_response`.
        """
        return self._drained.wait()

    # Control

    def clear(self) -> int:
        """Drop all queued audio now and end the response; returns `playout_ms`."""
        if self._active:
            self._notify(self.on_cleared)
        self._request_silence()
        self._discard()
        self._open = False
        self._paused = False
        self._finish()
        return self.playout_ms

    def pause(self) -> None:
        """Send silence but keep the queue (a maybe-barge-in); `clear()` and
        `begin_response()` also unpause, so a forgotten pause can't mute the next reply."""
        self._request_silence()
        if not self._paused:
            self._ahead_at_pause = self._ahead_samples()
        self._paused = True

    def resume(self) -> None:
        """Continue exactly where `pause()` stopped."""
        self._paused = False

    def _request_silence(self) -> None:
        """Note when the audio really stops: `silenced_at` is set by the next silent frame."""
        if self.playing:
            self._stop_requested = True
            self.silenced_at = None

    def stop(self) -> None:
        self._discard()
        self._open = False
        self._active = False
        self._drained.set()
        super().stop()

    # aiortc side

    async def recv(self) -> av.AudioFrame | av.Packet:
        """The next 20 ms for RTCRtpSender: a frame to encode, or, between responses, the
        already encoded silence packet (no response open or playing, hangover done).

        aiortc's encoder stamps the first frame it encodes after such a run with its own
        next timestamp (the one it would have used without the run); that frame is the
        silence right after `begin_response`, or at worst a reply's first 20 ms, which
        Piper's quiet lead-in fills.

        With `dtx_packet` set, most idle slots return nothing: the wait goes on to the
        next slot (every slot still passes through `next_frame`, so the echo reference
        and the pacing tally see them all) and the packets' `pts` jump over the gap."""
        while True:
            out = await self.next_frame()
            pts = (self._frames - 1) * FRAME_SAMPLES
            idle = out.response_id is None and not self._active
            if self.silence_packet is None or not idle:
                self._encode_left = SILENCE_HANGOVER_FRAMES
                self._idle_packets = 0
                break
            if self._encode_left > 0:
                self._encode_left -= 1
                break
            payload = self.silence_packet
            if self.dtx_packet is not None:
                slot, self._idle_packets = self._idle_packets, self._idle_packets + 1
                if slot % DTX_INTERVAL_FRAMES:
                    self.frames_not_sent += 1
                    continue
                payload = self.dtx_packet
            packet = av.Packet(payload)
            packet.pts, packet.time_base = pts, TIME_BASE
            return packet
        frame = av.AudioFrame.from_ndarray(out.pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.time_base = TIME_BASE
        frame.pts = pts
        return frame

    async def next_frame(self) -> OutboundFrame:
        """The next 20 ms, when it is due (response audio up to `send_ahead_s` early)."""
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = self._clock()
        else:
            delay = self._start + self._frames * FRAME_SECONDS - self._clock()
            late = -delay  # how far behind its own schedule the track is
            self._pacing.note(late)
            if self._send_ahead_s and self._frame_ready():
                delay -= self._send_ahead_s
            if delay > 0:
                await asyncio.sleep(delay)
            elif late > LATE_RESYNC_FRAMES * FRAME_SECONDS and self._resync_silence:
                idle = not self.playing and not (self._open or self._queue.size)
                if idle or late > MAX_BURST_FRAMES * FRAME_SECONDS:
                    # Skip the missed slots: silence isn't sent late at all, and a reply
                    # goes on from where it was instead of as a backlog of stale frames.
                    missed = int(late / FRAME_SECONDS)
                    self._frames += missed
                    if not idle:
                        self.skipped_late_frames += missed
            if self.readyState != "live":
                raise MediaStreamError
        # Decide the content only now, after the wait, so a clear() during it is obeyed.
        frame = self._next_samples()
        pcm = frame.pcm
        if self._stop_requested and not pcm.any():
            self._stop_requested = False
            self.silenced_at = self._clock()
        if self.on_frame_sent is not None:
            try:
                self.on_frame_sent(pcm, self._clock())
            except Exception:
                log.exception("on_frame_sent failed")
        self._frames += 1
        return frame

    def _frame_ready(self) -> bool:
        # While the response is still open, wait for a whole frame rather than splice a
        # gap into the middle of one; once it's ended, the last partial frame is padded.
        ready = self._queue.size >= FRAME_SAMPLES or (not self._open and self._queue.size > 0)
        return ready and not self._paused

    def _next_samples(self) -> OutboundFrame:
        if not self._frame_ready():
            self._finish_if_played_out()
            return OutboundFrame(_SILENCE, None)
        pcm = self._queue.take(FRAME_SAMPLES)
        self._played += len(pcm)
        if not self._announced:
            self._announced = True
            self._notify(self.on_playback_started)
        last = self._finish_if_played_out()
        if len(pcm) < FRAME_SAMPLES:
            pcm = np.concatenate([pcm, np.zeros(FRAME_SAMPLES - len(pcm), dtype=np.int16)])
        return OutboundFrame(pcm, self._response_id, last)

    def _finish_if_played_out(self) -> bool:
        if self._active and not self._open and self._queue.size == 0 and self._announced:
            self._finish()
            self._notify(self.on_playback_stopped)
            return True
        return False

    def _finish(self) -> None:
        self._active = False
        self._drained.set()

    def _discard(self) -> None:
        self._queue.clear()
        self._resampler.flush()

    def _notify(self, callback: Callable[[str], None] | None) -> None:
        if callback is None or self._response_id is None:
            return
        try:
            callback(self._response_id)
        except Exception:
            log.exception("playback callback failed")
