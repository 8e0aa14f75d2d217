"""A stereo Ogg Opus file written block by block (PyAV's libopus), for call recordings.

Left is the caller, right is the assistant, 48 kHz. Ogg pages are written as they fill,
so a file cut short by a crash still plays up to its last page. Blocking: run it on a
worker thread, never on the event loop.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

RATE = 48_000
BIT_RATE = 48_000  # two voices, mono each: plenty for speech


class OggOpusWriter:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._container = av.open(str(self.path), "w", format="ogg")
        self._stream = self._container.add_stream("libopus", rate=RATE, layout="stereo")
        self._stream.bit_rate = BIT_RATE
        self.samples = 0

    def write(self, stereo: np.ndarray) -> None:
        """`stereo`: int16 of shape (n, 2)."""
        if len(stereo) == 0:
            return
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(stereo, dtype=np.int16).reshape(1, -1),
            format="s16",
            layout="stereo",
        )
        frame.sample_rate = RATE
        frame.pts = self.samples
        self.samples += len(stereo)
        for packet in self._stream.encode(frame):
            self._container.mux(packet)

    def close(self) -> None:
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()


def upsample_16k_to_48k(pcm: np.ndarray) -> np.ndarray:
    """Linear interpolation, ×3: enough for a recording of speech."""
    if len(pcm) == 0:
        return pcm.astype(np.int16)
    x = np.arange(len(pcm) * 3) / 3.0
    return np.interp(x, np.arange(len(pcm)), pcm.astype(np.float32)).astype(np.int16)
