"""Was a voice held back as possible echo the bot's own voice? Judged from what was sent.

The listener (server/turns/echo_listening.py) holds back a voice it cannot yet tell from
the echo. When the hold ends without the gate's evidence of a person (the reply's echo
is over, or the gate let a voice through), dropping it as echo lost whatever the user
said over the reply: a soft question under the echo's level was never answered. So the
hold is judged as a whole, after the fact, by what an echo is: what was sent, delayed
and filtered.

At each candidate delay (the guard's measured one, and the lags where the held audio
best correlates with the reference, GCC-PHAT) one complex gain per frequency is fitted to
the held frames at once (least squares, as `AlignedEchoModel`), and each frame's
residual is what that echo leaves of it; the delay that leaves least wins. An echo is
explained: the fit is to the very frames it judges (over WebRTC it removed 15-25 dB of
the echo frames of a hold, and at most ~5 dB of a soft question's over them). A person
is not in the reference: a voice at the echo's level over it leaves 3 dB or more of each
frame. Which frames count as a person, and
when a fit is good enough to say so, is the listener's call.

Frames are judged ~0.5 s at a time, each part at its own delay (a client's playout
buffer can slip mid-reply); the listener judges a hold part by part while it goes on,
so the reference each part needs is still kept. Cost per part: one GCC-PHAT against the
guard's 1.5 s of lags and a 512-point FFT per frame and candidate, ~1-2 ms.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from media.echo.align import phat
from media.echo.model import FRAME, echo_waveform
from media.echo.reference import History

_WINDOW = np.hanning(FRAME)
MAX_FRAMES = 125  # the newest ~4 s of a hold are judged (the reference kept covers it)
CHUNK_FRAMES = 16  # ... ~0.5 s at a time, each at its own delay
CANDIDATES = 3  # correlation peaks tried, besides the measured delay
PEAK_SEPARATION = 32  # samples between candidate peaks
TAPS = 1  # frames of reference each frame's echo is fitted to: the direct path and
# reflections (the first), and a room's reverb tail (~130 ms more)


@dataclass(frozen=True)
class HeldAudio:
    """The judgement of held frames, per frame: the power the best-fitting echo leaves
    (None: the frame's reference is no longer kept, or no echo was tried), the frame
    less that echo, and the delay (samples) of that echo."""

    left: list[float | None]
    cleaned: list[np.ndarray]
    delays: list[int | None]


def explain(
    samples: History,
    frames: Sequence[np.ndarray],
    ends: Sequence[int],
    delays: Sequence[int],
    lags: tuple[int, int],
) -> HeldAudio:
    """`frames`: consecutive 512-sample microphone frames, oldest first, each ending at
    reference index `ends[i]` (the reference sent at the same nominal time); `delays`:
    known echo delays in samples; `lags`: the range searched for more, in samples. Judged
    `CHUNK_FRAMES` at a time, each at its own delay: a client's playout can slip."""
    n = len(frames)
    judged = HeldAudio([None] * n, list(frames), [None] * n)
    a = max(0, n - MAX_FRAMES)
    while a < n:
        b = n if n - a < CHUNK_FRAMES + CHUNK_FRAMES // 2 else a + CHUNK_FRAMES
        _judge(samples, frames, ends, delays, lags, a, b, judged)
        a = b
    return judged


def _judge(
    samples: History,
    frames: Sequence[np.ndarray],
    ends: Sequence[int],
    delays: Sequence[int],
    lags: tuple[int, int],
    a: int,
    b: int,
    out: HeldAudio,
) -> None:
    """Frames a..b-1: what the echo leaves of each at the candidate delay that leaves
    least of it (the echo may have slipped from one to another within the part), and
    each less the echo at the delay that leaves least of them all."""
    mics = np.array([f.astype(np.float64) for f in frames[a:b]])
    chunk_ends = np.asarray(ends[a:b], dtype=np.int64)
    peaks = _peaks(samples, mics, int(chunk_ends[-1]), lags)
    best: tuple[float, int, np.ndarray, np.ndarray, np.ndarray] | None = None
    m = np.fft.rfft(_WINDOW * mics, axis=1)  # (frames, bins)
    least = np.full(b - a, np.inf)
    for delay in dict.fromkeys([*delays, *peaks]):
        kept = chunk_ends - delay - FRAME >= samples.start
        if not kept.any():
            continue
        # x[j, i]: frame i's reference at the delay plus j frames (the room's tail)
        x = np.array(
            [
                np.fft.rfft(_WINDOW * _refs(samples, chunk_ends, delay + j * FRAME), axis=1)
                for j in range(TAPS)
            ]
        )
        gains = _fit(m[kept], x[:, kept])
        left = np.sum(np.abs(m - np.einsum("jb,jib->ib", gains, x)) ** 2, axis=1)
        left *= 2 / (FRAME * FRAME * 0.375)
        least = np.minimum(least, np.where(kept, left, np.inf))
        total = float(np.sum(left[kept]))
        if best is None or total < best[0]:
            best = (total, delay, gains, left, kept)
    if best is None:
        return
    _, delay, gains, _, _ = best
    for i, e in enumerate(chunk_ends):
        echo = np.zeros(FRAME)
        for j in range(TAPS):
            stop = int(e) - delay - j * FRAME + FRAME // 2
            echo += echo_waveform(gains[j], samples.get(stop - 2 * FRAME, stop).astype(np.float64))
        cleaned = np.clip(np.rint(mics[i] - echo), -32768, 32767)
        out.cleaned[a + i] = cleaned.astype(np.int16)
        out.left[a + i] = float(least[i]) if np.isfinite(least[i]) else None
        out.delays[a + i] = delay


def _refs(samples: History, ends: np.ndarray, delay: int) -> np.ndarray:
    return np.array([samples.get(e - delay - FRAME, e - delay) for e in ends], np.float64)


def _fit(m: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Least-squares gains per frequency and tap: m[i, b] ~ sum_j g[j, b] x[j, i, b]
    (regularized like the echo model, so a frequency never sent gets no gain)."""
    xb = np.transpose(x, (2, 1, 0))  # (bins, frames, taps)
    normal = np.einsum("bij,bik->bjk", np.conj(xb), xb)
    scale = np.max(np.real(np.einsum("bjj->b", normal)))
    normal += (1e-3 * scale / TAPS + 1.0) * np.eye(TAPS)
    rhs = np.einsum("bij,ib->bj", np.conj(xb), m)
    return np.linalg.solve(normal, rhs[..., None])[..., 0].T  # (taps, bins)


def _peaks(samples: History, mics: np.ndarray, end: int, lags: tuple[int, int]) -> list[int]:
    """The lags (samples) where the held audio, ending at reference index `end`, best
    correlates with the reference (GCC-PHAT), highest first."""
    lo, hi = lags
    mic = mics.reshape(-1)
    ref = samples.get(end - len(mic) - hi, end - lo).astype(np.float64)
    if not np.any(ref) or not np.any(mic):
        return []
    corr = phat(mic, ref)[: hi - lo + 1][::-1]  # corr[i]: lag lo + i
    peaks: list[int] = []
    for i in np.argsort(corr)[::-1]:
        if all(abs(int(i) - p) > PEAK_SEPARATION for p in peaks):
            peaks.append(int(i))
        if len(peaks) == CANDIDATES:
            break
    return [lo + p for p in peaks]
