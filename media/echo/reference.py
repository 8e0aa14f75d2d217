"""What the client was sent: the far-end reference on one 16 kHz timeline.

The outbound track sends a 20 ms frame every 20 ms for the whole call (silence included),
so the reference is one continuous stream: sample `i` left the server at `t0 + i / 16000`,
where `t0` is the send time of the first frame. Frames are placed by counting samples,
not by their own `sent_at`, because aiortc hands them to the network in bursts when the
event loop runs late while their RTP timestamps (and so the client's playout) keep the
ideal spacing. Only a real gap in the stream (the track stopped being read for longer
than `GAP_SECONDS`) is filled with silence from `sent_at`.

Kept per 4 ms block as well: the mean power, which the delay estimator and the echo gate
read; the samples themselves feed the canceller.
"""

from __future__ import annotations

import numpy as np

from media.resample import Resampler

RATE = 16000
BLOCK = 64  # 4 ms at 16 kHz: the envelope resolution of delay estimation and gating
GAP_SECONDS = 0.1


class History:
    """An append-only 1-D array addressed by absolute index; old items fall off the front.

    Reads outside what is held (too old, or not yet written) come back as `fill`, so a
    caller can ask for any window without bounds checks.
    """

    def __init__(self, keep: int, dtype: type = np.float64, fill: float = 0.0) -> None:
        self.keep = keep
        self.fill = fill
        self._buf = np.full(2 * keep, fill, dtype=dtype)
        self._used = 0  # items in _buf
        self.end = 0  # absolute index one past the newest item

    @property
    def start(self) -> int:
        return self.end - self._used

    def append(self, values: np.ndarray) -> None:
        n = len(values)
        if n >= self.keep:
            self._buf[: self.keep] = values[-self.keep :]
            self._used = self.keep
        else:
            if self._used + n > len(self._buf):
                keep = self.keep - n
                self._buf[:keep] = self._buf[self._used - keep : self._used]
                self._used = keep
            self._buf[self._used : self._used + n] = values
            self._used += n
        self.end += n

    def get(self, start: int, stop: int) -> np.ndarray:
        """Items `start..stop-1`; anything not held reads as `fill`."""
        out = np.full(max(stop - start, 0), self.fill, dtype=self._buf.dtype)
        lo, hi = max(start, self.start), min(stop, self.end)
        if lo < hi:
            base = self._used - self.end
            out[lo - start : hi - start] = self._buf[base + lo : base + hi]
        return out


class ReferenceTimeline:
    """The sent audio, resampled to 16 kHz, with its power per 4 ms block.

    `keep_seconds` must cover the longest echo delay plus the analysis window.
    """

    def __init__(self, keep_seconds: float = 6.0) -> None:
        self._resampler = Resampler(RATE)
        self.samples = History(int(keep_seconds * RATE), np.float32)
        self.power = History(int(keep_seconds * RATE) // BLOCK, np.float64)
        self._partial = np.zeros(0, dtype=np.float32)  # samples not yet in a whole block
        self.t0: float | None = None

    @property
    def started(self) -> bool:
        return self.t0 is not None

    def add(self, frame: np.ndarray, sent_at: float, sample_rate: int = 48000) -> None:
        """One sent frame (1-D int16) and the time it left."""
        if self.t0 is None:
            self.t0 = sent_at
        else:
            gap = sent_at - (self.t0 + self.samples.end / RATE)
            if gap > GAP_SECONDS:
                self._append(np.zeros(int(gap * RATE), dtype=np.float32))
        self._append(self._resampler.pcm(frame, sample_rate).astype(np.float32))

    def index_at(self, t: float) -> float:
        """The (fractional) sample index sent at time `t`."""
        assert self.t0 is not None
        return (t - self.t0) * RATE

    def _append(self, pcm: np.ndarray) -> None:
        self.samples.append(pcm)
        joined = np.concatenate([self._partial, pcm]) if len(self._partial) else pcm
        whole = len(joined) // BLOCK * BLOCK
        if whole:
            blocks = joined[:whole].reshape(-1, BLOCK).astype(np.float64)
            self.power.append(np.mean(blocks * blocks, axis=1))
        self._partial = joined[whole:].copy()
