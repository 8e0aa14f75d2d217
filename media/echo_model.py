"""A linear echo model that works at once: per-frequency gains fitted by least squares.

AEC3 needs ~1.3 s of echo to converge and, while new, suppresses a person's voice along
with the echo, so on a call's first reply its output proves nothing. Once the delay is
known to the sample (`WaveformDelay`), the echo in a 32 ms frame is close to the
reference 32 ms earlier by that delay times one complex gain per frequency (the
speaker, codec and room as a short filter). Those gains follow in closed form from the
frames heard so far (the Wiener solution `sum(M X*) / sum(|X|^2)`), so after ~5 frames of
echo the model predicts the next frame; over real WebRTC (Opus both ways) it removed
10-25 dB of each new frame after 150 ms of echo. A person's voice is not in the
reference and stays in the residual: that is the evidence the gate needs. A voice hidden
in training frames does not bias the fit (it is uncorrelated with the reference), it only
adds noise. What it cannot model, a reverb tail longer than the frame, stays in the
residual too, and the gate credits the model only with what it is seen to remove.
"""

from __future__ import annotations

import numpy as np

FRAME = 512
HALF = FRAME // 2
_WINDOW = np.hanning(FRAME)


class SpectralEchoModel:
    """`residual(mic, ref)` per frame, `learn()` after a frame judged echo only."""

    def __init__(self, forget: float = 0.97, min_frames: int = 3) -> None:
        self.forget = forget  # per learned frame: ~1 s of memory
        self.min_frames = min_frames
        self._cross = np.zeros(FRAME // 2 + 1, np.complex128)
        self._power = np.zeros(FRAME // 2 + 1)
        self._frames = 0
        self._last: tuple[np.ndarray, np.ndarray] | None = None
        self._gain = np.zeros(FRAME // 2 + 1, np.complex128)

    @property
    def ready(self) -> bool:
        return self._frames >= self.min_frames

    def reset(self) -> None:
        self._cross[:] = 0.0
        self._power[:] = 0.0
        self._frames = 0
        self._last = None

    def residual(self, mic: np.ndarray, ref: np.ndarray) -> float | None:
        """Mean power of `mic` less the model's echo of `ref` (the reference at the echo
        delay, same length), or None while the model has seen too little echo."""
        m = np.fft.rfft(_WINDOW * mic)
        x = np.fft.rfft(_WINDOW * ref)
        self._last = (m, x)
        if not self.ready:
            return None
        # Regularized: a frequency the reference has barely carried gets no gain.
        self._gain = gain = self._cross / (self._power + 1e-3 * float(np.max(self._power)) + 1.0)
        left = m - gain * x
        # Parseval, with the Hann window's mean square (3/8) undone: a mean power per sample.
        return float(np.sum(np.abs(left) ** 2) * 2 / (FRAME * FRAME * 0.375))

    def echo(self, ref: np.ndarray) -> np.ndarray:
        """The model's echo waveform in the frame last given to `residual`, from `ref`:
        the reference at the delay from half a frame before that frame to half a frame
        after it (2 x 512 samples). The gains become a filter of +-256 taps, applied by
        FFT with room on both sides, so the frame's samples are free of wrap-around."""
        h = np.fft.irfft(self._gain, FRAME)
        taps = np.zeros(2 * FRAME)
        taps[:HALF] = h[:HALF]
        taps[-HALF:] = h[HALF:]  # negative lags: the delay rounded a little late
        out = np.fft.irfft(np.fft.rfft(ref, 2 * FRAME) * np.fft.rfft(taps), 2 * FRAME)
        return out[HALF : HALF + FRAME]

    def fit(self, frames: list[tuple[np.ndarray, np.ndarray]]) -> list[float | None]:
        """Learn from (mic, ref) frames heard before the delay was known, oldest first;
        returns each frame's residual as predicted before it was learned (None for the
        first few): the model's record so far."""
        record = []
        for mic, ref in frames:
            record.append(self.residual(mic, ref))
            self.learn()
        return record

    def learn(self) -> None:
        """Fit the last frame given to `residual`: it held echo and nothing else."""
        if self._last is None:
            return
        m, x = self._last
        self._cross *= self.forget
        self._power *= self.forget
        self._cross += m * np.conj(x)
        self._power += np.abs(x) ** 2
        self._frames += 1
        self._last = None
