"""Could a voice held back at its onset be the echo of something sent? Asked early.

While a call's echo is unknown (`EchoPresence`), every voice over the bot is held back
until it is known not to be the bot's own voice coming back. Waiting for the waveform
search to stay quiet over ~320 ms of it made a client with no echo barge in ~365 ms
late. But a held voice is echo only if it is echo at some delay, and most delays are
ruled out by what the microphone did before and during it:

- Before the voice the microphone was quiet. A delay at which the reply was loud over
  those frames while the microphone stayed `quiet_db` under it (the presence's
  "cleared" lags) holds no echo: an echo is never that far under what it echoes. An
  echo of the reply's own start is quiet until that start reaches the microphone, so
  its delay is never cleared; a lag is ruled out only where every lag within
  `slack_seconds` of it was (the mapping of the microphone onto the reference moves by
  a few tens of ms when a less-delayed arrival corrects it, and a client's playout
  buffer can slip).
- During the voice, a frame louder than anything sent within `slack_seconds` before
  the delay through the reverb tail after it (at a coupling of 0 dB: the gate's worst
  case -3 dB plus its Geigel margin) is not echo from that delay; two such frames rule
  the delay out.
- At the delays left, each loud voiced frame is correlated sample by sample with the
  reference (every lag, normalised per lag, pre-emphasised so the reply's loud low
  vowels do not dominate), and the whole hold by GCC-PHAT (as `WaveformDelay`). An echo
  correlates at its delay (mean coefficient 0.75-1.0 as a bare copy, 0.19-0.7 through
  the simulated room, where the phase transform then peaks 19-42 times the spread); a
  voice reached 0.2-0.45 at the best of the lags left over WebRTC (the bench's user
  speaks in the bot's own Piper voice) with peaks of 6-13. Either bar reached
  (`min_correlation` 0.2, `min_peak` 15) keeps the voice held: a bare or room echo onset
  was never released in 108 simulated first replies; a voice, at its 3rd-5th frame.

What is left is usually a narrow band of delays near "the voice began as the reply
began": the echo of the reply's first words, which looks like a voice onset.

A "no" says only that this voice is not echo: it is replayed at once. It does not rule
the echo out for the call (an echo longer than the reply so far is still to come).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from media.echo.align import normalized_correlation, phat, raised_cosine
from media.echo.presence import LOUD_MIC_POWER, NOISE_POWER, frame_powers
from media.echo.reference import BLOCK, RATE, ReferenceTimeline
from media.levels import mean_power

FRAME = 512
TAIL_SECONDS = 0.15  # echo energy arriving after the direct path
PRE_EMPHASIS = 0.9
SPREAD_SAMPLES = 4000  # lags either side of those left, for the PHAT peak's spread
TAPER = 256  # samples: raised-cosine ends of the hold's window (cut edges are broadband)
CACHED_FRAMES = 64  # frames' correlations kept for the next check of the same voice


def _sliding_max(x: np.ndarray, before: int, after: int) -> np.ndarray:
    """out[i] = max(x[i - before : i + after + 1]), clipped at the ends."""
    padded = np.concatenate([np.full(before, -np.inf), x, np.full(after, -np.inf)])
    windows = np.lib.stride_tricks.sliding_window_view(padded, before + after + 1)
    return windows.max(axis=1)


def _emphasis(x: np.ndarray) -> np.ndarray:
    return x[1:] - PRE_EMPHASIS * x[:-1]


class OnsetCheck:
    """`could_be_echo` for a held voice; lags in 4 ms blocks, `lo..hi` as the presence's."""

    def __init__(
        self,
        lo: int,
        hi: int,
        slack_seconds: float = 0.064,
        max_coupling_db: float = 0.0,
        min_correlation: float = 0.2,
        min_peak: float = 15.0,
    ) -> None:
        self.lo, self.hi = lo, hi
        self.slack = round(slack_seconds * RATE / BLOCK)
        self.tail = round(TAIL_SECONDS * RATE / BLOCK)
        self.coupling = 10 ** (max_coupling_db / 10)
        self.min_correlation = min_correlation
        self.min_peak = min_peak
        self.last_peak = 0.0  # the GCC-PHAT peak ratio of the last check
        self.last_correlation = 0.0  # the best mean correlation of the last check
        self.last_lags = 0  # the lags (blocks) the last check had left to correlate
        # Each frame's correlation over the lags left, by (end index, lags): the checks of
        # one held voice (its 3rd to 6th voiced frame) share their first frames, and one
        # frame's correlation over 1.5 s of lags is most of a check's ~4 ms.
        self._correlations: dict[tuple[int, int, int], np.ndarray] = {}

    def could_be_echo(
        self,
        reference: ReferenceTimeline,
        cleared: np.ndarray,
        frames: Sequence[tuple[np.ndarray, bool, int, int]],
    ) -> bool:
        """`cleared`: the presence's clearing count per lag before the voice began;
        `frames`: (samples, voiced, last block, end index) of each frame since it began,
        oldest first."""
        n = self.hi - self.lo + 1
        ok = cleared >= 1
        quiet = _sliding_max((~ok).astype(np.float64), self.slack, self.slack) == 0
        loud = np.zeros(n, np.int32)
        for samples, voiced, last_block, _ in frames:
            mic = mean_power(samples)
            if not voiced or mic <= NOISE_POWER:
                continue
            powers = frame_powers(
                reference.power, last_block, self.lo - self.slack, self.hi + self.tail
            )
            bound = _sliding_max(powers, self.slack, self.tail)[self.slack : self.slack + n]
            loud += mic > bound * self.coupling
        left = ~quiet & (loud < 2)
        self.last_lags = int(left.sum())
        self.last_correlation = self.last_peak = 0.0
        if not left.any():
            return False
        return self._correlates(reference, left, frames)

    def _correlates(
        self,
        reference: ReferenceTimeline,
        left: np.ndarray,
        frames: Sequence[tuple[np.ndarray, bool, int, int]],
    ) -> bool:
        """The loud voiced frames correlate with the reference at one common lag among
        those `left` (mean coefficient over the frames, each lag normalised)."""
        idx = np.flatnonzero(left)
        dmin = (self.lo + int(idx[0])) * BLOCK - BLOCK
        dmax = (self.lo + int(idx[-1])) * BLOCK + BLOCK
        lags = dmax - dmin + 1
        total = np.zeros(lags)
        count = 0
        for samples, voiced, _, end_index in frames:
            mic = samples.astype(np.float64)
            if not voiced or float(np.mean(mic * mic)) <= LOUD_MIC_POWER:
                continue
            total += self._correlation(reference, mic, end_index, dmin, dmax)
            count += 1
        if not count:
            return True  # nothing loud enough to tell: it may be echo
        mean = (total / count)[::-1]  # mean[i]: lag dmin + i
        blocks = (np.arange(dmin, dmax + 1) + BLOCK // 2) // BLOCK - self.lo
        inside = (blocks >= 0) & (blocks < len(left))
        inside[inside] &= left[blocks[inside]]
        best = float(mean[inside].max(initial=0.0))
        self.last_correlation = best
        self.last_peak = self._phat_peak(reference, frames, dmin, dmax, inside)
        return best >= self.min_correlation or self.last_peak >= self.min_peak

    def _correlation(
        self, reference: ReferenceTimeline, mic: np.ndarray, end_index: int, dmin: int, dmax: int
    ) -> np.ndarray:
        """[k]: the frame's correlation coefficient with the reference at lag dmax - k."""
        key = (end_index, dmin, dmax)
        cached = self._correlations.get(key)
        if cached is None:
            if len(self._correlations) >= CACHED_FRAMES:
                self._correlations.clear()
            ref = reference.samples.get(end_index - dmax - FRAME, end_index - dmin)
            lags = dmax - dmin + 1
            cached = normalized_correlation(_emphasis(mic), _emphasis(ref.astype(np.float64)), lags)
            self._correlations[key] = cached
        return cached

    def _phat_peak(
        self,
        reference: ReferenceTimeline,
        frames: Sequence[tuple[np.ndarray, bool, int, int]],
        dmin: int,
        dmax: int,
        inside: np.ndarray,
    ) -> float:
        """GCC-PHAT of the whole hold against the reference: its peak among the lags
        left over the spread of every lag within `SPREAD_SAMPLES` around them."""
        lo = max(dmin - SPREAD_SAMPLES, 0)
        hi = dmax + SPREAD_SAMPLES
        mic = np.concatenate([f[0] for f in frames]).astype(np.float64)
        n = len(mic)
        ramp = raised_cosine(min(TAPER, n // 4))
        mic[: len(ramp)] *= ramp
        mic[n - len(ramp) :] *= ramp[::-1]
        end = frames[-1][3]
        ref = reference.samples.get(end - n - hi, end - lo).astype(np.float64)
        corr = phat(mic, ref)[: hi - lo + 1][::-1]  # corr[i]: lag lo + i
        spread = float(np.std(corr))
        if spread <= 0:
            return 0.0
        band = corr[dmin - lo : dmax - lo + 1][inside]
        return float(band.max(initial=0.0)) / spread
