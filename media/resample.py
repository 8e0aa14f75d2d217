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

    def frame(self, frame: av.AudioFrame) -> np.ndarray:
        """Convert one decoded frame (any format, layout and rate)."""
        source = (frame.format.name, frame.layout.name, frame.sample_rate)
        parts = []
        if source != self._source:
            parts.append(self.flush())
            self._inner = av.AudioResampler(format="s16", layout="mono", rate=self.target_rate)
            self._source = source
        assert self._inner is not None
        parts.extend(_samples(f) for f in self._inner.resample(frame))
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
        if inner is None:
            return _EMPTY.copy()
        return _join([_samples(f) for f in inner.resample(None)])


def _samples(frame: av.AudioFrame) -> np.ndarray:
    return frame.to_ndarray().reshape(-1)


def _join(parts: list[np.ndarray]) -> np.ndarray:
    if not parts:
        return _EMPTY.copy()
    return np.concatenate(parts).astype(np.int16, copy=False)
