"""Audio as bytes on a wire: little-endian PCM16 at a given rate, or G.711 µ-law / A-law
at 8 kHz, to and from the int16 mono arrays the rest of Hark works with.

A WebSocket client appends its microphone in one of these and plays the reply in one of
these (OpenAI's `audio/pcm` at 24 kHz, `audio/pcmu`, `audio/pcma`). Each direction of a
stream keeps one converter, so the resampler's filter history runs across chunks and
chunk boundaries do not click.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from media import g711
from media.resample import Resampler

Encoding = Literal["pcm16", "ulaw", "alaw"]


class WireAudioError(ValueError):
    """Bytes that are not whole samples of the format."""


@dataclass(frozen=True)
class WireFormat:
    encoding: Encoding
    rate: int

    @property
    def bytes_per_sample(self) -> int:
        return 2 if self.encoding == "pcm16" else 1

    def duration_s(self, n_bytes: int) -> float:
        return n_bytes / self.bytes_per_sample / self.rate


def to_samples(data: bytes, fmt: WireFormat) -> np.ndarray:
    """Wire bytes → int16 samples at `fmt.rate`."""
    if fmt.encoding == "pcm16":
        if len(data) % 2:
            raise WireAudioError(f"PCM16 audio must be whole 2-byte samples; got {len(data)} bytes")
        return np.frombuffer(data, dtype="<i2").astype(np.int16)
    return g711.decode(data, fmt.encoding)


def from_samples(pcm: np.ndarray, fmt: WireFormat) -> bytes:
    """int16 samples at `fmt.rate` → wire bytes."""
    if fmt.encoding == "pcm16":
        return pcm.astype("<i2", copy=False).tobytes()
    return g711.encode(pcm, fmt.encoding)


class WireDecoder:
    """One inbound stream: wire bytes in `fmt` → int16 mono at `rate`."""

    def __init__(self, fmt: WireFormat, rate: int) -> None:
        self.format = fmt
        self._resampler = Resampler(rate)
        self._rate = rate

    def decode(self, data: bytes) -> np.ndarray:
        samples = to_samples(data, self.format)
        if self.format.rate == self._rate:
            return samples.copy()
        return self._resampler.pcm(samples, self.format.rate)


class WireEncoder:
    """One outbound stream: int16 mono at any rate → wire bytes in `fmt`."""

    def __init__(self, fmt: WireFormat) -> None:
        self.format = fmt
        self._resampler = Resampler(fmt.rate)

    def encode(self, pcm: np.ndarray, rate: int) -> bytes:
        return from_samples(self._resampler.pcm(pcm, rate), self.format)

    def flush(self) -> bytes:
        """The resampler's tail, at the end of a stretch of audio."""
        return from_samples(self._resampler.flush(), self.format)
