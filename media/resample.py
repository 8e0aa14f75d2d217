"""One stream's resampler: any audio in, int16 mono at a fixed rate out.

libswresample keeps a few samples of filter history between calls, so a stream must
keep ONE resampler for its whole life: a resampler per frame would click at every frame
boundary and lose those samples. The tail is only handed out by `flush()`.
"""

from __future__ import annotations

import av
import numpy as np

_EMPTY = np.zeros(0, dtype=np.int16)


class Resampler:
    """Converts one stream to 1-D int16 mono at `target_rate`.

    If the input's format, layout or rate changes mid-stream (a codec renegotiation, a
    TTS engine switching voices), the old converter is drained into the output and a new
    one is built, so no audio is lost at the switch.
    """

    def __init__(self, target_rate: int) -> None:
        if target_rate <= 0:
            raise ValueError(f"target_rate must be positive, got {target_rate}")
        self.target_rate = target_rate
        self._inner: av.AudioResampler | None = None
        self._source: tuple[str, str, int] | None = None
        self._zero_history = False  # the converter's last input frame was digital silence
        self.skipped = 0  # frames of silence answered without the converter

    def frame(self, frame: av.AudioFrame) -> np.ndarray:
        """Convert one decoded frame (any format, layout and rate).

        Digital silence after digital silence is not converted at all: the converter's
        history is zeros, so its output would be exactly as many zeros (a silent caller's
        50 frames a second cost nothing here)."""
        source = (frame.format.name, frame.layout.name, frame.sample_rate)
        silent = _silent_s16(frame)
        if silent and self._zero_history and source == self._source:
            n, rest = divmod(frame.samples * self.target_rate, frame.sample_rate)
            if not rest:
                self.skipped += 1
                return np.zeros(n, dtype=np.int16)
        parts = []
        if source != self._source:
            parts.append(self.flush())
            self._inner = av.AudioResampler(format="s16", layout="mono", rate=self.target_rate)
            self._source = source
        assert self._inner is not None
        parts.extend(_samples(f) for f in self._inner.resample(frame))
        self._zero_history = silent
        return _join(parts)

    def pcm(self, pcm: np.ndarray, sample_rate: int) -> np.ndarray:
        """Convert 1-D int16 mono at `sample_rate`; the rate may differ between calls."""
        if pcm.ndim != 1 or pcm.dtype != np.int16:
            raise ValueError(f"expected 1-D int16 PCM, got {pcm.dtype} with shape {pcm.shape}")
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {sample_rate}")
        if pcm.size == 0:
            return _EMPTY.copy()
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(pcm).reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = sample_rate
        return self.frame(frame)

    def flush(self) -> np.ndarray:
        """Drain the buffered tail at the end of a stream; the next input starts afresh."""
        inner, self._inner, self._source = self._inner, None, None
        self._zero_history = False
        if inner is None:
            return _EMPTY.copy()
        return _join([_samples(f) for f in inner.resample(None)])


def _silent_s16(frame: av.AudioFrame) -> bool:
    """A packed s16 frame (what aiortc's decoders give) of nothing but zeros."""
    if frame.format.name != "s16" or frame.samples == 0:
        return False
    count = frame.samples * len(frame.layout.channels)
    return not np.frombuffer(frame.planes[0], dtype=np.int16, count=count).any()


def _samples(frame: av.AudioFrame) -> np.ndarray:
    return frame.to_ndarray().reshape(-1)


def _join(parts: list[np.ndarray]) -> np.ndarray:
    if not parts:
        return _EMPTY.copy()
    return np.concatenate(parts).astype(np.int16, copy=False)
