"""The echo delay from the waveforms, within the first ~150 ms of echo: GCC-PHAT.

`EchoDelayEstimator` correlates envelopes and needs ~0.6 s of echo; until then the gate
must judge each frame against everything sent in the last 1.65 s with a worst-case
coupling, which hid a person talking at the bot's own level over a call's first reply.
The waveform itself pins the delay much sooner: the echo is a filtered, attenuated copy
of what was sent, so the cross-correlation of microphone and reference has one sharp
peak at the delay. With the phase transform (each frequency weighted alike, so the
reference's loud low vowels do not smear the peak over a pitch period) ~100-200 ms of
echo give a peak 15-100 times the spread of the rest, where noise (and the window's own
edges, once tapered) stays under ~11.

Both streams are halved to 8 kHz first (speech's echo is coherent below 4 kHz and it
halves the cost: ~0.8 ms per search over 0.5 s of microphone and 1.5 s of lags). The
microphone window is tapered at both ends: cut edges are broadband and would correlate
with the reference's own cut at lag zero.

Frames the gate did not judge pure echo (a person talking, or the bot silent) are
blanked, with the same ramps at each blank's edges: a hard step from silence to noise
correlates with the reference's own onset at a few ms (noise alone peaked 12-27 times
the spread at 2-5 ms). A search needs `min_loud_frames` frames louder than
`loud_power` in the window: noise has no echo to find.

A delay is reported once two searches in a row agree within 2 ms, each with a peak at
least `min_peak_ratio` times the standard deviation of all lags, and the window's loud
frames, one by one, correlate with the reference at that delay. A person's voice over
the reply, with no echo at all, can peak as high, where its onset lines up with one of
the reply's, and a voice synthesized like the bot's (F0 and all) held such a peak for
up to 450 ms (15-33 times the spread, 2 in 42 trials); but a loud frame of echo
correlates with the reference at the delay (median coefficient 0.25-0.58 through the
simulated room, 0.8-0.95 over WebRTC) where a voice does not (~0). Lags under 30 ms are
not searched: no echo comes back over a network that fast, and a voice starting with
the reply peaked there. Through the simulated room (tests/echo_path.py) it found 20
delays in 20 after 120-360 ms of echo, exact to the sample but one (+28 ms: a strong
reflection); over real WebRTC after 64-100 ms.

`shift_of` is a plain correlation over a short window: how far the echo moved from a
known delay (a client's playout buffer slipping or jumping mid-reply).
"""

from __future__ import annotations

import statistics
from collections import deque

import numpy as np

from media.echo.reference import RATE, History

FRAME = 512
DECIMATE = 2
TAPER = 256  # samples at 8 kHz: a 32 ms raised-cosine ramp at each end of the window


def raised_cosine(n: int) -> np.ndarray:
    """A rising ramp of `n` samples (0 to 1, half-sample offset)."""
    return 0.5 - 0.5 * np.cos(np.pi * (np.arange(n) + 0.5) / n)


_RAMP = raised_cosine(TAPER)
np.fft.irfft(np.fft.rfft(np.zeros(1 << 14)))  # the first transform of a size costs ~8 ms


def _halve(x: np.ndarray) -> np.ndarray:
    """16 kHz to 8 kHz: the mean of each pair of samples (a low-pass with its zero at
    8 kHz; what aliases does so alike in both streams)."""
    return x[: len(x) // 2 * 2].reshape(-1, 2).mean(axis=1, dtype=np.float64)


class WaveformDelay:
    """Feed it every microphone frame (`push`); `search` when a delay is wanted."""

    def __init__(
        self,
        max_delay_seconds: float = 1.5,
        window_seconds: float = 0.5,
        min_peak_ratio: float = 15.0,
        agree_seconds: float = 0.002,
        min_delay_seconds: float = 0.03,
        min_correlation: float = 0.15,
        loud_power: float = 30000.0,
        min_loud_frames: int = 2,
    ) -> None:
        self.max_lag = round(max_delay_seconds * RATE)
        self.frames = round(window_seconds * RATE / FRAME)
        self.window = self.frames * FRAME
        self.min_peak_ratio = min_peak_ratio
        self.agree = agree_seconds
        self.min_lag = round(min_delay_seconds * RATE) // DECIMATE
        self.min_correlation = min_correlation
        self.loud_power = loud_power
        self.min_loud_frames = min_loud_frames
        self._mic = History(self.window, np.float64)
        self._used: deque[bool] = deque([False] * self.frames, maxlen=self.frames)
        self._loud: deque[bool] = deque([False] * self.frames, maxlen=self.frames)
        self._agreeing: list[float] = []  # the delays of the last searches, agreeing
        self.peak_ratio = 0.0  # the last search's peak over the spread of all lags

    def push(self, frame: np.ndarray, use: bool = True) -> None:
        """One 512-sample microphone frame (16 kHz); `use=False` (a person talking)
        blanks it."""
        samples = frame.astype(np.float64)
        self._mic.append(samples)
        self._used.append(use)
        self._loud.append(use and float(np.mean(samples * samples)) > self.loud_power)

    def reset(self) -> None:
        self._agreeing = []

    def recent(self) -> list[tuple[int, np.ndarray]]:
        """The frames in the window that were used, as (frames ago, samples), oldest
        first: 0 is the newest frame."""
        mic = self._mic.get(self._mic.end - self.window, self._mic.end)
        return [
            (self.frames - 1 - i, mic[i * FRAME : (i + 1) * FRAME])
            for i, used in enumerate(self._used)
            if used
        ]

    def search(self, reference: History, end_index: int) -> float | None:
        """The delay (s) of the echo in the microphone window that ends at reference
        sample `end_index`, once confident; None if not (yet)."""
        if sum(self._loud) < self.min_loud_frames:
            return None
        n = self.window
        mic = _halve(self._mic.get(self._mic.end - n, self._mic.end)) * self._weights()
        ref = _halve(reference.get(end_index - n - self.max_lag, end_index))
        # Lags 0..max_lag never wrap around a transform as long as the reference.
        # corr[k] = sum_i ref[i + k] mic[i]; the mic's sample i is ref's i + max_lag at
        # zero delay, so lag (in samples at 8 kHz) = max_lag / 2 - k.
        lags = self.max_lag // DECIMATE
        corr = phat(mic, ref)[: lags + 1 - self.min_lag]
        k = int(np.argmax(corr))
        spread = float(np.std(corr))
        self.peak_ratio = float(corr[k]) / spread if spread > 0 else 0.0
        if self.peak_ratio < self.min_peak_ratio:
            self._agreeing = []
            return None
        delay = (lags - k) * DECIMATE / RATE
        if self._agreeing and abs(delay - self._agreeing[-1]) > self.agree:
            self._agreeing = []
        self._agreeing.append(delay)
        agreed = len(self._agreeing) >= 2
        return delay if agreed and self._correlates(reference, end_index, delay) else None

    def _correlates(self, reference: History, end_index: int, delay: float) -> bool:
        """The loud frames of the window, one by one, correlate with the reference at
        `delay` (the median of their best coefficients within a sample): an echo does in
        each frame, where two voices the phase transform lined up do not."""
        lag = round(delay * RATE)
        mic = self._mic.get(self._mic.end - self.window, self._mic.end)
        ref = reference.get(end_index - self.window - lag - 1, end_index - lag + 1)
        coefficients = []
        for i, loud in enumerate(self._loud):
            if not loud:
                continue
            m = mic[i * FRAME : (i + 1) * FRAME]
            best = -1.0
            for shift in (0, 1, 2):  # the lag at 8 kHz is exact to a sample at 16 kHz
                x = ref[i * FRAME + shift : (i + 1) * FRAME + shift].astype(np.float64)
                norm = float(np.sqrt(np.dot(m, m) * np.dot(x, x)))
                best = max(best, float(np.dot(m, x)) / norm if norm > 0 else 0.0)
            coefficients.append(best)
        # statistics.median: np.median's first call in a process costs ~6 ms
        return bool(coefficients) and statistics.median(coefficients) >= self.min_correlation

    def _weights(self) -> np.ndarray:
        """Per sample at 8 kHz: 1 in used frames, 0 in blanked ones, raised-cosine ramps
        inside the used side of every edge (the window's ends count as edges)."""
        step = FRAME // DECIMATE
        used = np.repeat(np.array(self._used, dtype=np.float64), step)
        weights = used.copy()
        edges = np.flatnonzero(np.diff(np.concatenate([[0.0], used, [0.0]])))
        for edge in edges:  # rises at `edge`, falls just before it
            if edge < len(used) and used[edge]:
                weights[edge : edge + TAPER] *= _RAMP[: len(weights[edge : edge + TAPER])]
            elif edge > 0 and used[edge - 1]:
                lo = max(edge - TAPER, 0)
                weights[lo:edge] *= _RAMP[::-1][TAPER - (edge - lo) :]
        return weights


def phat(mic: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """GCC-PHAT: out[k] ~ sum_i ref[i + k] mic[i] with every frequency weighted alike,
    for k from 0 (valid while k + len(mic) <= len(ref))."""
    size = 1 << int(np.ceil(np.log2(len(ref))))
    cross = np.fft.rfft(ref, size) * np.conj(np.fft.rfft(mic, size))
    cross /= np.abs(cross) + 1e-9
    return np.fft.irfft(cross, size)


def normalized_correlation(mic: np.ndarray, ref: np.ndarray, lags: int) -> np.ndarray:
    """out[k] for k < `lags`: the correlation coefficient of `mic` with
    ref[k : k + len(mic)], each lag normalized by the reference's own energy there."""
    n = len(mic)
    size = 1 << int(np.ceil(np.log2(len(ref))))
    raw = np.fft.irfft(np.fft.rfft(ref, size) * np.conj(np.fft.rfft(mic, size)), size)[:lags]
    squares = np.concatenate([[0.0], np.cumsum(ref * ref)])
    energy = squares[n : n + lags] - squares[:lags]
    return raw / np.sqrt(np.maximum(energy * float(np.dot(mic, mic)), 1e-9))


def shift_of(mic: np.ndarray, ref: np.ndarray, max_shift: int) -> tuple[int, float, float]:
    """How many samples later than expected the echo in `mic` comes: `ref` is the
    reference at the expected delay with `max_shift` extra samples on each side. Returns
    the shift with the highest correlation coefficient, that coefficient, and the one at
    no shift. Plain correlation, each lag normalized by the reference's own energy there:
    over one 32 ms frame the phase transform let noisy quiet frequencies bury the peak."""
    corr = normalized_correlation(mic, ref, 2 * max_shift + 1)
    k = int(np.argmax(corr))
    return max_shift - k, float(corr[k]), float(corr[max_shift])
