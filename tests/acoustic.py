"""Acoustic test clients for any WebRTC voice peer: a scripted mic, a timed ear, an echo.

Turn-taking can only be judged from the outside, the way a user hears it: when did my
words go out, when did the bot's voice come back, when did it go quiet. These pieces
are aiortc tracks and sinks that know nothing about the peer's protocol, so the same
script measures Hark and any other bot (tests/bench/peers/ adapts them to each).

- `ScriptedMicrophone`: a paced 48 kHz track; `say(pcm)` queues an utterance (or
  silence) after whatever is queued and returns an `Utterance` whose `onset` / `end` are
  the exact times its first / last voiced 20 ms frame left the track.
- `ReplyRecorder`: every received frame with its arrival time and RMS, so "first reply
  audio" and "reply audio went silent" are simple questions (`first_audible_after`,
  `silent_from`).
- `EchoingMicrophone`: a scripted mic that also plays the received reply back into
  itself after a delay, attenuated, like smart glasses without echo cancellation; a
  real utterance queued with `say()` is mixed on top (echo + speech).

Every time is `time.monotonic()`, which on Linux is one clock for all processes on the
machine, so it compares directly with a local server's own stamps.
"""

from __future__ import annotations

import asyncio
import bisect
import fractions
import functools
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from tests.speech import silence, speak

RATE = 48_000
FRAME = 960  # 20 ms
FRAME_S = FRAME / RATE
AUDIBLE_RMS = 300.0  # int16 RMS over 20 ms that counts as sound (same as server.tools.call_client)
_TIME_BASE = fractions.Fraction(1, RATE)


def frame_rms(pcm: np.ndarray) -> float:
    return float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2))) if len(pcm) else 0.0


def voiced_span(pcm: np.ndarray) -> tuple[int, int] | None:
    """Index of the first and last audible 20 ms frame of `pcm` (48 kHz), or None."""
    voiced = [i for i in range(0, len(pcm), FRAME) if frame_rms(pcm[i : i + FRAME]) >= AUDIBLE_RMS]
    return (voiced[0] // FRAME, voiced[-1] // FRAME) if voiced else None


# Sounds ---------------------------------------------------------------------------------


def utterance(text: str) -> np.ndarray:
    """`text` spoken by Piper at 48 kHz (deterministic: the same samples every run)."""
    return speak(text, RATE)


def pause(ms: int) -> np.ndarray:
    return silence(ms, RATE)


def trimmed(pcm: np.ndarray, max_ms: int | None = None) -> np.ndarray:
    """Only the voiced part of `pcm`, at most `max_ms` long with a short fade-out."""
    span = voiced_span(pcm)
    if span is None:
        return pcm[:0].copy()
    out = pcm[span[0] * FRAME : (span[1] + 1) * FRAME].copy()
    if max_ms is not None and len(out) > max_ms * RATE // 1000:
        out = out[: max_ms * RATE // 1000]
        fade = min(len(out), 30 * RATE // 1000)
        out[-fade:] = (out[-fade:] * np.linspace(1, 0, fade)).astype(np.int16)
    return out


BACKCHANNELS = ("Uh-huh.", "Mm-hmm.", "Yeah.")
MAX_NOISE_MS = 380  # a backchannel or cough, not a sentence


@functools.cache
def backchannel(text: str) -> np.ndarray:
    """A short spoken acknowledgement, trimmed to its voiced part (< 400 ms)."""
    pcm = trimmed(utterance(text), MAX_NOISE_MS)
    pcm.setflags(write=False)
    return pcm


def cough(seed: int = 0) -> np.ndarray:
    """A synthetic cough: two bursts of low-passed noise with fast attack and decay."""
    rng = np.random.default_rng(seed)
    parts = []
    for length_ms, level in ((140, 9000.0), (110, 6000.0)):
        n = length_ms * RATE // 1000
        noise = rng.standard_normal(n)
        kernel = np.ones(12) / 12  # a crude low-pass: coughs are mostly below 4 kHz
        noise = np.convolve(noise, kernel, mode="same")
        noise /= np.max(np.abs(noise)) or 1.0
        envelope = np.minimum(np.arange(n) / (0.01 * RATE), 1.0) * np.exp(
            -np.arange(n) / (0.05 * RATE)
        )
        parts += [noise * envelope * level, np.zeros(60 * RATE // 1000)]
    return np.concatenate(parts[:-1]).astype(np.int16)


def click() -> np.ndarray:
    """A sharp click (a tap on the glasses' frame): 8 ms of decaying broadband noise."""
    rng = np.random.default_rng(1)
    n = 8 * RATE // 1000
    burst = rng.standard_normal(n) * np.exp(-np.arange(n) / (0.002 * RATE)) * 20000
    return np.concatenate([burst, np.zeros(40 * RATE // 1000)]).clip(-32768, 32767).astype(np.int16)


def noises() -> list[tuple[str, np.ndarray]]:
    """The false-interruption set: backchannels, a cough and a click, each < 400 ms."""
    return [(text, backchannel(text)) for text in BACKCHANNELS] + [
        ("<cough>", cough()),
        ("<click>", click()),
    ]


# The microphone --------------------------------------------------------------------------


@dataclass
class Utterance:
    """One queued sound; `onset`/`end` are set when its first/last voiced frame is sent."""

    label: str
    pcm: np.ndarray
    queued: float = field(default_factory=time.monotonic)
    started: float | None = None  # first frame (voiced or not) sent
    onset: float | None = None
    end: float | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self._span = voiced_span(self.pcm)

    async def sent(self, timeout: float = 60.0) -> Utterance:
        """Wait until the whole sound has been sent."""
        await asyncio.wait_for(self.done.wait(), timeout)
        return self


class ScriptedMicrophone(MediaStreamTrack):
    """A paced mono 48 kHz track that plays queued sounds back to back, silence between.

    Frame n is due at start + n * 20 ms (a late loop catches up, so it never drifts); the
    time a frame is returned to aiortc's sender is its send time.
    """

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._queue: deque[Utterance] = deque()
        self._current: Utterance | None = None
        self._offset = 0  # samples of the current utterance sent
        self._start: float | None = None
        self._frames = 0

    def say(self, pcm: np.ndarray, label: str = "") -> Utterance:
        """Queue `pcm` (int16 mono 48 kHz) after everything already queued."""
        item = Utterance(label, np.asarray(pcm, dtype=np.int16).reshape(-1))
        self._queue.append(item)
        return item

    @property
    def busy(self) -> bool:
        return self._current is not None or bool(self._queue)

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        else:
            delay = self._start + self._frames * FRAME_S - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        pcm = self._mix(self._next_script_frame(time.monotonic()))
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.time_base = _TIME_BASE
        frame.pts = self._frames * FRAME
        self._frames += 1
        return frame

    def _mix(self, pcm: np.ndarray) -> np.ndarray:
        """Hook for subclasses that add sound on top of the script (echo)."""
        return pcm

    def _next_script_frame(self, now: float) -> np.ndarray:
        if self._current is None and self._queue:
            self._current, self._offset = self._queue.popleft(), 0
            self._current.started = now
        item = self._current
        if item is None:
            return np.zeros(FRAME, dtype=np.int16)
        index = self._offset // FRAME
        pcm = item.pcm[self._offset : self._offset + FRAME]
        self._offset += FRAME
        if item._span is not None:
            if index == item._span[0]:
                item.onset = now
            if index == item._span[1]:
                item.end = now + FRAME_S  # the frame's last sample
        if self._offset >= len(item.pcm):
            self._current = None
            item.done.set()
        if len(pcm) < FRAME:
            pcm = np.concatenate([pcm, np.zeros(FRAME - len(pcm), dtype=np.int16)])
        return pcm


class EchoingMicrophone(ScriptedMicrophone):
    """A scripted mic that hears the bot: received audio comes back `delay_ms` later at
    `gain_db` (no echo cancellation), mixed with whatever the script is saying."""

    def __init__(self, delay_ms: float = 200.0, gain_db: float = -9.0) -> None:
        super().__init__()
        self.delay_s = delay_ms / 1000
        self.gain = 10 ** (gain_db / 20)
        self._heard: deque[tuple[float, np.ndarray]] = deque()
        self._ready = np.zeros(0, dtype=np.int16)
        self.echoed_frames = 0  # audible echo frames mixed in, to show the echo was real

    def hear(self, at: float, pcm: np.ndarray) -> None:
        """Feed one received chunk (48 kHz) with its arrival time; see `ReplyRecorder`."""
        self._heard.append((at, pcm))

    def _mix(self, pcm: np.ndarray) -> np.ndarray:
        due = time.monotonic() - self.delay_s
        while self._heard and self._heard[0][0] <= due:
            self._ready = np.concatenate([self._ready, self._heard.popleft()[1]])
        echo = self._ready[:FRAME]
        self._ready = self._ready[FRAME:]
        if len(echo) < FRAME:
            echo = np.concatenate([echo, np.zeros(FRAME - len(echo), dtype=np.int16)])
        echo = echo.astype(np.float64) * self.gain
        if frame_rms(echo) >= AUDIBLE_RMS:
            self.echoed_frames += 1
        return (pcm.astype(np.float64) + echo).clip(-32768, 32767).astype(np.int16)


# The ear -------------------------------------------------------------------------------


@dataclass
class ReplyRecorder:
    """Received audio (48 kHz mono chunks) with arrival times and per-chunk RMS.

    Has the `add(pcm)` interface of server.tools.call_client.ReplyRecorder, so it can replace
    it in a CallClient; `listeners` get every chunk too (an EchoingMicrophone's `hear`).
    """

    chunks: list[np.ndarray] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    levels: list[float] = field(default_factory=list)
    listeners: list[Callable[[float, np.ndarray], None]] = field(default_factory=list)

    def add(self, pcm: np.ndarray) -> None:
        now = time.monotonic()
        self.chunks.append(pcm)
        self.times.append(now)
        self.levels.append(frame_rms(pcm))
        for listener in self.listeners:
            listener(now, pcm)

    def audio(self) -> np.ndarray:
        return np.concatenate(self.chunks) if self.chunks else np.zeros(0, dtype=np.int16)

    def _from(self, t: float) -> int:
        """Index of the first chunk that arrived at or after `t` (arrivals are in order);
        pollers scan only from there, so waiting costs little CPU however long the call."""
        return bisect.bisect_left(self.times, t)

    def first_audible_after(self, t: float, until: float | None = None) -> float | None:
        for i in range(self._from(t), len(self.times)):
            at = self.times[i]
            if until is not None and at >= until:
                return None
            if self.levels[i] >= AUDIBLE_RMS:
                return at
        return None

    def last_audible(self, before: float | None = None) -> float | None:
        for at, level in zip(reversed(self.times), reversed(self.levels), strict=False):
            if level >= AUDIBLE_RMS and (before is None or at < before):
                return at
        return None

    def audible_between(self, start: float, end: float) -> bool:
        return self.audible_ms_between(start, end) > 0

    def audible_ms_between(self, start: float, end: float) -> float:
        """Approximate audible received audio in [start, end), in ms."""
        total = 0
        for i in range(self._from(start), len(self.times)):
            if self.times[i] >= end:
                break
            if self.levels[i] >= AUDIBLE_RMS:
                total += len(self.chunks[i])
        return total * 1000 / RATE

    def silent_from(self, t: float, hold_ms: float = 500.0) -> float | None:
        """When the audio went quiet after `t`: the arrival of the first chunk of a run of
        silence at least `hold_ms` long (a pause between words is shorter)."""
        run_start: float | None = None
        for i in range(self._from(t), len(self.times)):
            at, level = self.times[i], self.levels[i]
            if level >= AUDIBLE_RMS:
                run_start = None
            else:
                if run_start is None:
                    run_start = at
                if (at - run_start) * 1000 >= hold_ms:
                    return run_start
        return None

    def gaps_ms(self, start: float, end: float, min_gap_ms: float = 300.0) -> list[float]:
        """Silent stretches of at least `min_gap_ms` between audible audio in [start, end):
        a reply paused and resumed shows up here."""
        gaps = []
        last: float | None = None
        for i in range(self._from(start), len(self.times)):
            at, level = self.times[i], self.levels[i]
            if at >= end:
                break
            if level < AUDIBLE_RMS:
                continue
            if last is not None and (at - last) * 1000 >= min_gap_ms:
                gaps.append(round((at - last) * 1000, 1))
            last = at
        return gaps

    async def wait_audible(self, after: float, timeout: float) -> float | None:
        """Poll until audible audio arrives after `after`; its arrival time, or None."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.first_audible_after(after)
            if found is not None:
                return found
            await asyncio.sleep(0.02)
        return None

    async def wait_quiet(self, after: float, hold_ms: float, timeout: float) -> float | None:
        """Poll until the audio has been silent for `hold_ms` after `after`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.silent_from(after, hold_ms)
            if found is not None:
                return found
            await asyncio.sleep(0.05)
        return None
