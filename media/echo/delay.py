"""How long the bot's voice takes to come back: reference vs microphone envelope correlation.

The server knows when each reference sample left, but not the path back: network to the
client, its jitter buffer, its playout buffer, the air, the capture buffer, the network
again. That sum is unknown, different per client and drifts during a call, so it is
measured, not configured.

Method: both streams become log-power envelopes in 4 ms blocks. Every few frames the
last `window` of the microphone envelope is correlated (Pearson, per lag) with the
reference envelope over lags 0..`max_lag`. Speech envelopes have sharp, irregular
syllable on/offsets, so the echo shows as one clear peak; the peak is refined by a
parabola to sub-block precision. Room reverb smears the envelope, but only by a few ms
at the peak, which the canceller's own short delay search absorbs.

Tracking: an estimate is taken only when the window had enough reference speech and the
peak is strong (`min_correlation`). The first one is adopted once two measurements in a
row agree; a
later one that moves by more than two blocks must be seen three times in a row, so a bad
stretch cannot throw the canceller off, and none is made while the delay in use still
correlates almost as well as the new peak (a path change makes the old lag collapse;
a voice over the echo only adds a rival peak). Microphone frames that the gate did not judge
pure echo (a person talking) are masked out of the correlation, like an adaptive
filter's double-talk freeze; a window that is mostly masked is not measured.

Cost: one `np.correlate` of 500 x 875 points every 4th frame, ~0.1 ms.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from media.echo.reference import BLOCK, RATE, History

BLOCK_SECONDS = BLOCK / RATE
LOG_FLOOR = 300.0  # block power floor (~ -65 dBFS): digital silence and faint noise look alike
ACTIVE_POWER = 1000.0  # a reference block louder than this (~ -60 dBFS) is "sound"


@dataclass(frozen=True)
class DelayEstimate:
    delay_seconds: float
    correlation: float
    at_current: float  # the correlation at the delay in use (0 if none)


class EchoDelayEstimator:
    """Feed it every microphone frame's block powers; read `delay_seconds` (or None)."""

    def __init__(
        self,
        max_delay_seconds: float = 1.5,
        window_seconds: float = 2.0,
        every_frames: int = 4,
        min_correlation: float = 0.45,
        min_active_fraction: float = 0.25,
    ) -> None:
        self.max_lag = round(max_delay_seconds / BLOCK_SECONDS)
        self.window = round(window_seconds / BLOCK_SECONDS)
        self.every_frames = every_frames
        self.min_correlation = min_correlation
        self.min_active_fraction = min_active_fraction
        self._mic = History(self.window, np.float64, fill=np.log10(LOG_FLOOR))
        self._mic_filled = 0
        self._frames = 0
        self._candidate: float | None = None
        self._confirmations = 0
        self.confirmations = 3  # consecutive measurements that agree before a move is made
        self.delay_seconds: float | None = None
        self.last: DelayEstimate | None = None  # the latest confident measurement

    def push(
        self, mic_power: np.ndarray, zero_lag_block: int, reference: History, use: bool = True
    ) -> None:
        """Block powers of one microphone frame, oldest first; `zero_lag_block` is the
        reference block sent at the same nominal time as the frame's last block. A frame
        with `use=False` (someone talking) is masked out of the correlation."""
        if use:
            self._mic.append(np.log10(np.maximum(mic_power, LOG_FLOOR)))
        else:
            self._mic.append(np.full(len(mic_power), np.nan))
        self._mic_filled = min(self._mic_filled + len(mic_power), self.window)
        self._frames += 1
        if self._frames % self.every_frames or self._mic_filled < self.window // 2:
            return
        estimate = self._measure(zero_lag_block, reference)
        if estimate is None:
            return
        self.last = estimate
        if estimate.at_current >= max(self.min_correlation, 0.8 * estimate.correlation):
            self._candidate = None  # the delay in use still explains the echo: stay
            return
        self._track(estimate.delay_seconds)

    def adopt(self, delay_seconds: float) -> None:
        """Take a delay measured another way (the waveform search, the echo model
        following a slip) as the one in use. It is newer than what the envelope window
        holds, so the window starts over: 2 s of echo at the old delay otherwise pulled
        the delay back to it within a second, away from the echo."""
        self.delay_seconds = delay_seconds
        self._candidate = None
        self._mic_filled = 0

    def _measure(self, zero_lag_block: int, reference: History) -> DelayEstimate | None:
        n = self._mic_filled
        x = self._mic.get(self._mic.end - n, self._mic.end)
        valid = ~np.isnan(x)
        if np.mean(valid) < 0.5:
            return None
        x[~valid] = np.mean(x[valid])  # masked blocks: neutral, they add nothing
        ref_power = reference.get(zero_lag_block - n + 1 - self.max_lag, zero_lag_block + 1)
        if np.mean(ref_power > ACTIVE_POWER) < self.min_active_fraction:
            return None
        y = np.log10(np.maximum(ref_power, LOG_FLOOR))
        x = x - x.mean()
        x_norm = np.sqrt(np.dot(x, x))
        if x_norm < 1e-6:
            return None
        # raw[k] = sum_i x[i] * y[i + k]; lag (in blocks) = max_lag - k.
        raw = np.correlate(y, x, mode="valid")
        sums = np.concatenate([[0.0], np.cumsum(y)])
        squares = np.concatenate([[0.0], np.cumsum(y * y)])
        win_sum = sums[n:] - sums[:-n]
        win_var = squares[n:] - squares[:-n] - win_sum * win_sum / n
        # x is zero-mean, so sum x*(y - mean y) == sum x*y.
        corr = raw / (x_norm * np.sqrt(np.maximum(win_var, 1e-9)))
        k = int(np.argmax(corr))
        peak = float(corr[k])
        if peak < self.min_correlation:
            return None
        offset = 0.0
        if 0 < k < len(corr) - 1:
            left, right = corr[k - 1], corr[k + 1]
            denominator = left - 2 * peak + right
            if denominator < 0:
                offset = 0.5 * (left - right) / denominator
        lag_blocks = self.max_lag - (k + offset)
        at_current = 0.0
        if self.delay_seconds is not None:
            current = self.max_lag - round(self.delay_seconds / BLOCK_SECONDS)
            at_current = float(corr[min(max(current, 0), len(corr) - 1)])
        return DelayEstimate(max(lag_blocks, 0.0) * BLOCK_SECONDS, peak, at_current)

    def _track(self, delay: float) -> None:
        close = 2 * BLOCK_SECONDS
        if self.delay_seconds is None and self._candidate is None:
            self._candidate, self._confirmations = delay, 1
        elif self.delay_seconds is None:
            if abs(delay - self._candidate) <= close:
                self.delay_seconds, self._candidate = delay, None
            else:
                self._candidate = delay
        elif abs(delay - self.delay_seconds) <= close:
            self.delay_seconds += 0.3 * (delay - self.delay_seconds)  # smooth the jitter
            self._candidate = None
        elif self._candidate is not None and abs(delay - self._candidate) <= close:
            self._confirmations += 1
            if self._confirmations >= self.confirmations:
                self.delay_seconds = delay
                self._candidate = None
        else:
            self._candidate = delay
            self._confirmations = 1
