"""Per frame: is the microphone hearing only the bot's own echo, or a person too?

Inputs are three powers (mean squares over the 32 ms frame):
- `echo_bound`: the loudest 32 ms of reference that can be echoing in this frame: the
  window from the estimated delay back through the room's reverb tail (or, before the
  delay is known, everything sent within the longest delay considered);
- `mic`: the raw microphone frame;
- `residual`: the frame after the canceller.

Rule: near-end speech is present when the residual is louder than the loudest echo
this frame could hold, after the cancellation the canceller is achieving:

    residual > echo_bound * max_echo_gain / max(erle / margin, 1)   and   residual > floor

- `max_echo_gain` (default -3 dB) is the worst echo path assumed: speaker-to-mic
  coupling at most 3 dB below what was sent. Smart glasses measure -6 to -12 dB.
- `erle` is learned: the median of mic/residual over the last 64 frames that carried
  echo; it starts at 1 (0 dB), so before the canceller converges (and before the delay
  is known) only a voice louder than the loudest possible echo counts.
- `margin` (8 dB) covers the spread of the residual around its median: the gate credits
  the canceller with 8 dB less than its median, and never with less than nothing.
- Once near-end speech is seen, the verdict holds for `hangover_frames` (160 ms) so the
  dips between syllables do not break the segmenter's run of speech frames.

A frame with no reference in its window is never "echo only": with the bot silent, the
gate is out of the way. Limits: a user much quieter than the echo is not heard over it
until the bot pauses; an echo louder than `max_echo_gain` before the canceller
converges can pass as speech; nonlinear speaker distortion lowers the achievable `erle`,
which the learned median absorbs (barge-in then needs a louder voice).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

ACTIVE_FRAME_POWER = 1000.0  # ~ -60 dBFS over 32 ms: below it the reference is silence


@dataclass
class GateParams:
    max_echo_gain_db: float = -3.0
    margin_db: float = 8.0
    floor_power: float = 3000.0  # ~ -55 dBFS: quieter than this is never a person talking
    hangover_frames: int = 5
    erle_frames: int = 96
    settle_frames: int = 80  # AEC3 suppresses hard while new (~2.5 s): learn nothing then
    max_erle_db: float = 30.0


class EchoGate:
    """Stateful per-stream decision; `decide` once per microphone frame, in order."""

    def __init__(self, params: GateParams | None = None) -> None:
        self.params = params or GateParams()
        self._powers: deque[tuple[float, float]] = deque(maxlen=self.params.erle_frames)
        self._hold = 0
        self._age = 0  # frames with echo since the canceller (re)started

    @property
    def erle_db(self) -> float:
        """The cancellation the gate currently credits the canceller with."""
        if len(self._powers) < self.params.erle_frames // 3:
            return 0.0
        mic, residual = np.sum(np.array(self._powers), axis=0)
        erle = 10 * np.log10(mic / max(residual, 1.0))
        return float(min(max(erle, 0.0), self.params.max_erle_db))

    def forget_erle(self) -> None:
        """The canceller restarted: what it achieved before no longer holds."""
        self._powers.clear()
        self._age = 0

    def decide(self, echo_bound: float, mic: float, residual: float, aligned: bool) -> bool:
        """True if the frame is echo only: a speech onset in it must be ignored."""
        p = self.params
        if echo_bound < ACTIVE_FRAME_POWER:
            self._hold = 0
            return False
        max_echo = echo_bound * 10 ** (p.max_echo_gain_db / 10)
        if aligned:
            self._age += 1
        settled = aligned and self._age > p.settle_frames
        if settled and mic > 10 * p.floor_power and mic > max_echo * 1e-3:
            self._powers.append((mic, residual))
        erle_db = self.erle_db if aligned else 0.0
        threshold = max_echo * 10 ** (-max(erle_db - p.margin_db, 0.0) / 10)
        if residual > threshold and residual > p.floor_power:
            self._hold = p.hangover_frames
            return False
        if self._hold:
            self._hold -= 1
            return False
        return True
