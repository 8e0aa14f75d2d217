"""A linear echo model that works at once: per-frequency gains fitted by least squares.

AEC3 needs ~1.3 s of echo to converge and, while new, suppresses a person's voice along
with the echo, so on a call's first reply its output proves nothing. Once the delay is
known to the sample (`WaveformDelay`), the echo in a 32 ms frame is close to the
reference 32 ms at that delay times one complex gain per frequency (speaker, codec and
room as a short filter). The gains follow in closed form from the frames heard so far
(the Wiener solution `sum(M X*) / sum(|X|^2)`), so after a few frames of echo the model
predicts the next one: over real WebRTC (Opus both ways) it removed 10-25 dB of each new
frame after ~150 ms of echo. A person's voice is not in the reference and stays in the
residual: the evidence the gate needs. A voice hidden in training frames does not bias
the fit (it is uncorrelated with the reference), it only adds noise. What it cannot
model (a reverb tail longer than a frame, a distorting speaker) stays in the residual
too; the gate credits the model only with what it is seen to remove.

`AlignedEchoModel` keeps the model at its delay on the reference timeline. A client's
playout buffer can slip by a packet mid-reply, or jump after a stall (the echo then
comes 10-400 ms later or earlier), which leaves the whole echo in the residual, a false
voice. A frame the model explains poorly is therefore checked: the best-correlated lags
within 400 ms of its delay (over the newest 32 and 64 ms) are tried, and one where the
moved model leaves 3 dB less of the frame, and again of the next frame, is where the
echo went: the delay follows it, and the model has no say for 256 ms (the gate's other
rules judge those frames), as it has none in the frame in between. A voice like the
bot's can correlate with some lag of the reply as well as the echo does (0.95), and the
model moved there can even remove some of one frame of it, but seldom at the same lag
twice (the guard chases no slip while a voice is confirmed). Otherwise the echo is
where the model has it and what is left is not echo.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from media.echo.align import shift_of
from media.echo.reference import History

FRAME = 512
HALF = FRAME // 2
_WINDOW = np.hanning(FRAME)
SLIP_SAMPLES = 6400  # a jump of the echo the model follows: up to 400 ms either way
SLIP_WINDOWS = (1, 2)  # frames of microphone searched for it, newest first
SLIP_CHECK_DB = 12.0  # a frame the model removed less than this of is checked for a slip,
SLIP_MIN_SAMPLES = 8  # ... one of at least 0.5 ms,
SLIP_MIN_PEAK = 0.7  # ... where the frame correlates with the reference this well,
SLIP_MIN_GAIN = 0.2  # ... and this much better than at the model's delay,
SLIP_REFINE_SAMPLES = 16  # ... refined to the sample within 1 ms of its peak,
SLIP_GAIN_DB = 3.0  # ... is followed if the model moved there leaves this much less of
# the frame, and of the next one
SLIP_MIN_DELAY, SLIP_MAX_DELAY = 480, 24000  # samples: 30 ms to 1.5 s
SLIP_DOUBT_FRAMES = 8  # ... after which the model has no say for 256 ms
TRUST_FRAMES = 4.0  # a frequency counts in the residual once it has carried this many
# times the current frame's reference energy in the fit (else its gain is a guess)


def echo_waveform(gain: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """The echo in a frame predicted by per-frequency `gain`s, from `ref`: the reference
    at the delay from half a frame before that frame to half a frame after it (2 x 512
    samples). The gains become a filter of +-256 taps, applied by FFT with room on both
    sides, so the frame's samples are free of wrap-around."""
    h = np.fft.irfft(gain, FRAME)
    taps = np.zeros(2 * FRAME)
    taps[:HALF] = h[:HALF]
    taps[-HALF:] = h[HALF:]  # negative lags: the delay rounded a little late
    out = np.fft.irfft(np.fft.rfft(ref, 2 * FRAME) * np.fft.rfft(taps), 2 * FRAME)
    return out[HALF : HALF + FRAME]


class SpectralEchoModel:
    """`residual(mic, ref)` per frame, `learn()` after a frame judged echo only."""

    def __init__(self, forget: float = 0.97, min_frames: int = 3) -> None:
        self.forget = forget  # per learned frame: ~1 s of memory
        self.min_frames = min_frames
        self._cross = np.zeros(HALF + 1, np.complex128)
        self._power = np.zeros(HALF + 1)
        self._gain = np.zeros(HALF + 1, np.complex128)
        self._frames = 0
        self._last: tuple[np.ndarray, np.ndarray] | None = None

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
        self._gain = self._cross / (self._power + 1e-3 * float(np.max(self._power)) + 1.0)
        return float(self._left(m, x))

    def residuals(self, mic: np.ndarray, refs: np.ndarray) -> np.ndarray | None:
        """`residual` of `mic` against each row of `refs` (candidate alignments of the
        reference) at once, with nothing kept to learn; None while not ready."""
        if not self.ready:
            return None
        m = np.fft.rfft(_WINDOW * mic)
        x = np.fft.rfft(_WINDOW * refs, axis=-1)
        self._gain = self._cross / (self._power + 1e-3 * float(np.max(self._power)) + 1.0)
        return self._left(m, x)

    def _left(self, m: np.ndarray, x: np.ndarray) -> np.ndarray:
        left = np.abs(m - self._gain * x) ** 2
        # A frequency the fit has seen little of, next to what the reference carries now
        # (the first "s" of a reply), is left out: what is there may be unmodelled echo.
        power = np.abs(x) ** 2
        trust = self._power / (self._power + TRUST_FRAMES * power + 1e-9)
        # Parseval, with the Hann window's mean square (3/8) undone: a mean power per sample.
        return np.sum(left * trust, axis=-1) * 2 / (FRAME * FRAME * 0.375)

    def echo(self, ref: np.ndarray) -> np.ndarray:
        """The model's echo waveform in the frame last given to `residual`, from `ref`:
        the reference at the delay from half a frame before that frame to half a frame
        after it (2 x 512 samples)."""
        return echo_waveform(self._gain, ref)

    def fit(self, frames: list[tuple[np.ndarray, np.ndarray]]) -> list[float | None]:
        """Learn from (mic, ref) frames heard before the delay was known, oldest first;
        returns each frame's residual as predicted before it was learned (None for the
        first few): the model's record so far."""
        record = []
        for mic, ref in frames:
            record.append(self.residual(mic, ref))
            self.learn()
        return record

    def drop(self) -> None:
        """Forget the last frame given to `residual`: it is not to be learned."""
        self._last = None

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


class AlignedEchoModel:
    """The spectral model at its delay on the reference timeline. Frames are addressed
    by `end`, the reference sample index sent at the same nominal time as the frame's
    last sample; `delay` is in samples."""

    def __init__(self, reference: History) -> None:
        self._reference = reference
        self._fit = SpectralEchoModel()
        self._recent: deque[np.ndarray] = deque(maxlen=6)  # the microphone, for slips
        self._moved = 0.0  # a fraction of a sample the delay still owes `move`
        self._doubt = 0  # frames left in which a slip makes the residual meaningless
        self._candidate: int | None = None  # a shift the last frame suggested
        self.delay: int | None = None

    def hear(self, frame: np.ndarray) -> None:
        """Every microphone frame, in order (the slip check looks at the last six)."""
        self._recent.append(frame.astype(np.float64))

    def newest(self, frames: int) -> np.ndarray:
        """The last `frames` microphone frames heard, oldest first."""
        return np.concatenate(list(self._recent)[-frames:])

    def refit(self, delay: int, frames: list[tuple[int, np.ndarray]]) -> list[float | None]:
        """Start over at `delay`, fitted to (end, mic) frames of echo heard so far, oldest
        first; returns the residual of each as predicted before it was learned."""
        self.delay = delay
        self._doubt = 0
        self._fit.reset()
        return self._fit.fit([(mic, self._ref(end, delay)) for end, mic in frames])

    def forget(self) -> None:
        self.delay = None
        self._doubt = 0
        self._fit.reset()

    def move(self, samples: float) -> None:
        """The frames' reference indices moved by `samples` (the audio clock's anchor
        was corrected): the echo's delay in those indices moves with them."""
        self._moved += samples
        whole = round(self._moved)
        if self.delay is not None and whole:
            self.delay += whole
        self._moved -= whole

    def residual(self, frame: np.ndarray, end: int, follow_slips: bool) -> float | None:
        """The frame's power left by the model; None until it has seen enough echo, and
        for a few frames after the echo slipped (its residual then is echo, not voice).
        With `follow_slips` (the model usually removes the echo well), a frame it
        explains poorly is checked for a slip of the echo path, and the delay follows."""
        assert self.delay is not None
        mic = frame.astype(np.float64)
        left = self._fit.residual(mic, self._ref(end, self.delay))
        if self._doubt:
            self._doubt -= 1
            self._fit.drop()
            return None
        power = float(np.mean(mic * mic))
        candidate, self._candidate = self._candidate, None
        if not follow_slips or left is None or left * 10 ** (SLIP_CHECK_DB / 10) <= power:
            return left
        # A shift that explains this frame is followed only once it explains the next one
        # too: a voice like the bot's can match some lag of the reply for a frame, but
        # seldom the same lag twice. The frame in between has no say.
        confirmed = None if candidate is None else self._shifted(mic, end, candidate, left)
        if confirmed is not None:
            self.delay += confirmed  # the echo moved: the model follows it
            self._doubt = SLIP_DOUBT_FRAMES
            self._fit.drop()
            return None
        here = 0.0
        for frames in SLIP_WINDOWS:  # the newest frame alone first: the one before it
            shift, at_delay = self._slip(end, frames)  # may straddle the slip
            here = at_delay if frames == SLIP_WINDOWS[0] else here
            self._candidate = None if shift is None else self._shifted(mic, end, shift, left)
            if self._candidate is not None:
                self._fit.drop()
                return None
        self._fit.residual(mic, self._ref(end, self.delay))  # back to the frame as it was
        # The echo is where the model has it, so what is left is not echo, unless the
        # frame's gains are off (a sound the fit has barely heard, such as a first loud
        # "s"): one gain at the delay leaves 1 - r^2 of the frame, and may leave less.
        return min(left, (1 - here * here) * power)

    def _shifted(self, mic: np.ndarray, end: int, shift: int, left: float) -> int | None:
        """`shift`, refined to the sample, if the model moved by it leaves 3 dB less of
        the frame than where it is; else None."""
        assert self.delay is not None
        # A sample matters above 2 kHz, and the correlation peak of one frame is not
        # that exact: in the first whole frame after a slip (the frame before straddles
        # it) it came 9 samples short of the new delay over WebRTC, where the model
        # moved by the peak +-1 left as much as at the old delay, and the echo passed
        # for a voice. Every shift within `SLIP_REFINE_SAMPLES` of the peak is tried.
        low = shift - SLIP_REFINE_SAMPLES
        stop = end - self.delay - low
        ref = self._reference.get(stop - FRAME - 2 * SLIP_REFINE_SAMPLES, stop)
        # Row i is the reference at delay + shift + SLIP_REFINE_SAMPLES - i.
        rows = np.lib.stride_tricks.sliding_window_view(ref.astype(np.float64), FRAME)
        residuals = self._fit.residuals(mic, rows)
        assert residuals is not None  # ready: `left` came from it
        i = int(np.argmin(residuals))
        best = shift + SLIP_REFINE_SAMPLES - i
        if not SLIP_MIN_DELAY <= self.delay + best <= SLIP_MAX_DELAY:
            return None  # no echo comes back that fast, or is searched that late
        return best if residuals[i] * 10 ** (SLIP_GAIN_DB / 10) <= left else None

    def _slip(self, end: int, frames: int) -> tuple[int | None, float]:
        """Where the echo in the newest `frames` frames may have moved from the model's
        delay (the best-correlated shift, if off the delay and clearly better than it),
        and the correlation at the delay."""
        assert self.delay is not None
        recent = self.newest(frames)
        start = end - self.delay - len(recent) - SLIP_SAMPLES
        ref = self._reference.get(start, end - self.delay + SLIP_SAMPLES)
        shift, peak, here = shift_of(recent, ref.astype(np.float64), SLIP_SAMPLES)
        moved = abs(shift) >= SLIP_MIN_SAMPLES and peak - here >= SLIP_MIN_GAIN
        return (shift if moved and peak >= SLIP_MIN_PEAK else None), here

    def learn(self) -> None:
        """The frame last given to `residual` held echo and nothing else."""
        self._fit.learn()

    def subtract(self, frame: np.ndarray, end: int) -> np.ndarray:
        """The frame last given to `residual` with the model's echo waveform removed
        (and nothing else: no suppression to carve a voice)."""
        assert self.delay is not None
        stop = end - self.delay + HALF
        ref = self._reference.get(stop - 2 * FRAME, stop).astype(np.float64)
        out = frame - self._fit.echo(ref)
        return np.clip(np.rint(out), -32768, 32767).astype(np.int16)

    def _ref(self, end: int, delay: int) -> np.ndarray:
        return self._reference.get(end - delay - FRAME, end - delay).astype(np.float64)
