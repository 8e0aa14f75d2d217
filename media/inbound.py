"""The caller's microphone: a remote aiortc track -> fixed 16 kHz frames on an audio clock.

aiortc hands us decoded frames of whatever the codec gives (48 kHz stereo for Opus, 8 kHz
for G.711) in whatever sizes arrive. The VAD wants exactly 512 samples at 16 kHz, and
every timestamp the protocol reports (`audio_start_ms`, `audio_end_ms`) is a position in
the received audio, so the clock here counts samples, never wall time: a network stall
then shifts no positions.

Senders may stop sending in silence (Opus DTX on phones and glasses, and Chromium for a
digitally silent Web Audio track). A turn would then never end, since the VAD never sees
the silence. So after `gap_fill_s` without a packet the missing time is fed as silence,
unless the wait only looked long because the event loop itself was stalled. A sender
stops only once it is quiet (Opus's DTX after ~200 ms of no speech), so a gap right after
a frame well above the line's noise floor is the network holding speech back, not DTX:
feeding silence there would splice it into the middle of a word once the late audio
arrives. Such a gap is given `voiced_gap_fill_s` (a dead link still ends the turn).

A reader that falls behind (a starved event loop) finds many frames waiting in aiortc's
unbounded queue; past `MAX_BACKLOG_FRAMES` the oldest are dropped and replaced by as
much silence (`frames_dropped` counts them): a late turn is worth less than a bounded
call, and a VAD that catches up on 200 ms instead of seconds is in time again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError

from media.resample import Resampler

log = logging.getLogger(__name__)

# After a gap-fill timeout, how long packets still get to arrive before silence is fed.
STALL_GRACE_S = 0.02
# Decoded frames allowed to wait in the track's queue (aiortc's is unbounded): behind a
# stalled or starved reader, older frames are dropped and their time fed as silence, so
# memory stays bounded and the audio clock still counts every sample that was sent.
MAX_BACKLOG_FRAMES = 10
# A frame this many times louder (RMS) than the quietest of the last `FLOOR_FRAMES`, and
# over `VOICED_MIN_RMS`, is speech: a gap after it waits `voiced_gap_fill_s`.
VOICED_OVER_FLOOR = 4.0
VOICED_MIN_RMS = 300.0
FLOOR_FRAMES = 100  # ~2 s of 20 ms packets


class AudioSource(Protocol):
    """What we need of a track: aiortc's RemoteStreamTrack, or a fake in tests."""

    async def recv(self) -> av.AudioFrame: ...


class InboundAudio:
    """Reads one track in a task and calls `on_frame(frame, audio_end_ms)` per full frame.

    `on_frame` runs on the event loop, in order; its exceptions are logged so one bad
    frame can't silence the caller for the rest of the call.
    """

    def __init__(
        self,
        track: AudioSource,
        on_frame: Callable[[np.ndarray, int], None],
        frame_samples: int = 512,
        sample_rate: int = 16000,
        on_ended: Callable[[], None] | None = None,
        gap_fill_s: float | None = 0.1,
        voiced_gap_fill_s: float = 1.0,
    ) -> None:
        self.track = track
        self.on_frame = on_frame
        self.on_ended = on_ended
        self.frame_samples = frame_samples
        self.sample_rate = sample_rate
        self._resampler = Resampler(sample_rate)
        self._pending = np.zeros(0, dtype=np.int16)
        self._received = 0
        self._emitted = 0  # samples handed to on_frame
        self._stopping = False
        self._last_frame: float | None = None
        self._gap_fill_s = gap_fill_s
        self._voiced_gap_fill_s = voiced_gap_fill_s
        self._level = LineLevel()
        self._clock_at: float | None = None  # wall time the audio clock last caught up to
        self._task: asyncio.Task[None] | None = None
        self.max_backlog_frames = MAX_BACKLOG_FRAMES
        self.frames_dropped = 0

    @property
    def samples_received(self) -> int:
        """Samples at `sample_rate` received since start (including a partial frame)."""
        return self._received

    @property
    def audio_ms(self) -> int:
        return self._received * 1000 // self.sample_rate

    @property
    def last_frame_monotonic(self) -> float | None:
        """`time.monotonic()` when the track last delivered a frame (for idle timeouts)."""
        return self._last_frame

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="inbound-audio")

    async def stop(self) -> None:
        task, self._task = self._task, None
        # Python 3.11's wait_for can swallow a cancel that lands as a frame arrives; the
        # flag ends the loop at the next frame anyway (a hang-up once waited for minutes).
        self._stopping = True
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while not self._stopping:
            try:
                frame = await self._recv()
            except MediaStreamError:
                break
            except Exception:
                log.exception("inbound track failed; treating it as ended")
                break
            if frame is None:
                continue  # silence was fed for a gap
            frame = self._skip_backlog(frame)
            self._last_frame = self._clock_at = time.monotonic()
            try:
                pcm = self._resampler.frame(frame)
            except Exception:
                log.exception("cannot resample an inbound frame; dropped")
                continue
            self._level.hear(pcm)
            self._feed(pcm)
        self._feed(self._resampler.flush())  # a last partial frame is never classified
        if self.on_ended is not None:
            try:
                self.on_ended()
            except Exception:
                log.exception("on_ended failed")

    async def _recv(self) -> av.AudioFrame | None:
        """The next frame, or None after feeding silence for a gap with no packets."""
        if self._gap_fill_s is None or self._clock_at is None:
            return await self.track.recv()
        wait = self._voiced_gap_fill_s if self._level.voiced else self._gap_fill_s
        try:
            return await asyncio.wait_for(self.track.recv(), max(self._gap_fill_s, wait))
        except TimeoutError:
            pass
        # A starved event loop fires that timeout late, with the packets that were due
        # already waiting to be read: let them through before calling it a gap, or
        # silence is spliced into the middle of a word (Whisper heard "France" as
        # "friends" on a loaded machine).
        try:
            return await asyncio.wait_for(self.track.recv(), STALL_GRACE_S)
        except TimeoutError:
            now = time.monotonic()
            samples = int((now - self._clock_at) * self.sample_rate)
            # Speech held back longer than we wait, or a dead link: said once per gap (a
            # dead link after speech fills every `voiced_gap_fill_s` until the call ends).
            if self._level.voiced and self._clock_at == self._last_frame:
                log.info(
                    "inbound audio: no packet for %d ms after speech, fed as silence at %d ms",
                    round((now - self._clock_at) * 1000),
                    self.audio_ms,
                )
            self._clock_at = now
            self._feed(self._resampler.flush())  # what the resampler holds came first
            self._feed(np.zeros(samples, dtype=np.int16))
            return None

    def _skip_backlog(self, frame: av.AudioFrame) -> av.AudioFrame:
        """`frame`, or a newer one if more than `max_backlog_frames` wait behind it; the
        time of those dropped is fed as silence."""
        queue = getattr(self.track, "_queue", None)  # aiortc's RemoteStreamTrack
        if not isinstance(queue, asyncio.Queue) or queue.qsize() <= self.max_backlog_frames:
            return frame
        dropped_s = 0.0
        while queue.qsize() > self.max_backlog_frames:
            newer = queue.get_nowait()
            if newer is None:  # the track's end: it stays last in the queue
                queue.put_nowait(None)
                break
            dropped_s += frame.samples / frame.sample_rate
            self.frames_dropped += 1
            frame = newer
        # Rare (a reader starved ~200 ms or more) and it cuts what the caller said: said.
        log.info(
            "inbound audio fell behind: %d ms dropped at %d ms, fed as silence",
            round(dropped_s * 1000),
            self.audio_ms,
        )
        self._feed(self._resampler.flush())
        self._feed(np.zeros(round(dropped_s * self.sample_rate), dtype=np.int16))
        return frame

    def _feed(self, pcm: np.ndarray) -> None:
        self._received += len(pcm)
        pending = np.concatenate([self._pending, pcm]) if len(self._pending) else pcm
        n = self.frame_samples
        full = len(pending) // n * n
        for offset in range(0, full, n):
            self._emitted += n
            end_ms = self._emitted * 1000 // self.sample_rate
            try:
                self.on_frame(pending[offset : offset + n].copy(), end_ms)
            except Exception:
                log.exception("on_frame failed")
        self._pending = pending[full:].copy()


class LineLevel:
    """Whether the latest packet was speech: its RMS against the line's noise floor (the
    quietest packet of the last ~2 s), so a noisy line's floor does not read as speech."""

    def __init__(self) -> None:
        self._recent: deque[float] = deque(maxlen=FLOOR_FRAMES)
        self.voiced = False

    def hear(self, pcm: np.ndarray) -> None:
        if not len(pcm):
            return
        rms = float(np.sqrt(np.dot(pcm, pcm.astype(np.float64)) / len(pcm)))
        self._recent.append(rms)
        floor = min(self._recent)
        self.voiced = rms >= VOICED_MIN_RMS and rms >= VOICED_OVER_FLOOR * floor
