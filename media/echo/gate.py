"""Per frame: is the microphone hearing only the bot's own echo, or a person too?

Inputs are powers (mean squares over the 32 ms frame):
- `echo_bound`: the loudest 32 ms of reference that can be echoing in this frame: the
  window from the estimated delay back through the room's reverb tail (or, before the
  delay is known, everything sent within the longest delay considered);
- `mic`: the raw microphone frame;
- `residual`: the frame after the canceller (AEC3);
- `model`: the frame less the spectral echo model's prediction, once there is one.

Evidence of near-end speech in a frame is any of:

    residual > echo_bound * echo_gain / max(erle / margin, 1)   (what cancellation left)
    mic      > echo_bound * echo_gain * 2                       (Geigel: louder than echo)
    model    > echo_bound * model_gain * 2                      (what the model left)

all above `floor_power` (-55 dBFS).

- `echo_gain` is the speaker-to-mic coupling assumed: at most `max_echo_gain_db` (-3 dB;
  smart glasses measure -6 to -12 dB), lowered once 16 echo-only frames have shown the
  real coupling: their 95th-percentile mic/echo_bound ratio plus 4 dB. When the delay is
  first measured, the guard re-reads the last ~2 s of echo-only frames against the
  narrow window at that delay (`relearn_coupling`), so even a short first reply teaches
  it; a moved delay starts it over. From 4 such frames on (the delay found from the
  waveforms after ~150 ms of echo) their loudest ratio plus 7 dB stands in: a floor under
  the coupling, with more margin. From then on only frames certified echo teach it,
  always against the narrow window: frames AEC3 visibly cancelled (>= 15 dB removed,
  output not muted) once it has settled (new, it mutes a voice too), or frames the
  spectral model cancelled by >= 10 dB. A voice the gate missed is cancelled by neither,
  so it cannot raise the coupling and make the next barge-in harder still.
- `model_gain` is learned the same way from what the spectral model leaves of echo-only
  frames (model/echo_bound: 95th percentile plus 6 dB, its tail being longer; from 4
  frames, the median plus 12 dB, as the record it starts from, the echo heard while the
  delay was being found, may end in a voice hidden in it), and is never above
  `echo_gain`. Over real WebRTC it sits 15-25 dB under the coupling after ~150 ms of
  echo, so a voice at the bot's own level shows at its first syllable; where the model
  cancels little (a long reverb tail) the rule is no stronger than Geigel. A residual
  above the microphone itself is the model mispredicting, not a voice: no evidence.
- `erle` is learned: total mic power / total residual power over the last 96 echo-only
  frames, counted once AEC3 left its start-up phase (`settle_frames`, 1.3 s of echo); it
  starts at 1 (0 dB). It is capped by the cancellation over the last 16 frames no louder
  than echo (talk included, so it errs low), which collapses at once if the canceller
  loses the echo path. `margin` (10 dB) covers the spread of the residual: the gate
  credits the canceller with 10 dB less than it achieves, and never with less than nothing.
- The Geigel rule catches a loud voice even when AEC3 (new, or confused by double talk)
  suppresses it; the residual and model rules catch a voice quieter than the echo.
- Evidence must hold for `confirm_frames` (2) frames in a row, and for the residual and
  model rules the frame must not have been mostly (15 dB) removed: a one-frame glitch, or
  a frame mostly cancelled, is echo. This costs barge-in one frame (32 ms).
- Each burst of reference (the bot starting to speak again) gets no ERLE credit for its
  first `onset_frames` (256 ms): the canceller's filter lags the onset of the echo.
- Once near-end speech is confirmed, the verdict holds for `hangover_frames` (160 ms) so
  the dips between syllables do not break the segmenter's run of speech frames, unless
  the canceller removes over 20 dB of a frame: then it is echo again at once.
- Only frames judged echo-only teach `echo_gain`, `model_gain` and `erle`: one loud frame
  of a person would otherwise wipe out the credit just when it is needed.

A frame with no reference in its window is never "echo only": with the bot silent, the
gate is out of the way. Limits: before the delay is known (the first ~150 ms of echo in
a call) only a voice louder than the loudest possible echo counts; where the model cannot
follow the echo (a reverberant room, a distorting speaker) and AEC3 is new, a person no
louder than the echo is heard late; an echo path louder than `max_echo_gain_db` before
any of it was seen can pass as speech; nonlinear speaker distortion lowers the
achievable `erle`, which the learned ratios absorb (barge-in then needs a louder voice).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

ACTIVE_FRAME_POWER = 1000.0  # ~ -60 dBFS over 32 ms: below it the reference is silence


@dataclass
class GateParams:
    max_echo_gain_db: float = -3.0
    margin_db: float = 10.0
    floor_power: float = 3000.0  # ~ -55 dBFS: quieter than this is never a person talking
    hangover_frames: int = 5
    confirm_frames: int = 2  # consecutive frames of evidence before near-end speech counts
    min_residual_share_db: float = -15.0  # the canceller took more than this: it was echo
    hangover_break_db: float = -20.0  # ... and in a hangover, more than this ends it
    erle_frames: int = 96
    settle_frames: int = 40  # AEC3 suppresses hard while new (~1.3 s): learn nothing then
    onset_frames: int = 8  # no credit for the first 256 ms of each burst of reference
    max_erle_db: float = 30.0
    coupling_frames: int = 96
    coupling_percentile: float = 95.0
    coupling_margin_db: float = 4.0
    coupling_min_frames: int = 16
    coupling_quick_frames: int = 4  # at a freshly measured delay, fewer frames will do,
    coupling_quick_margin_db: float = 3.0  # ... judged by their loudest, with more margin
    certified_cancellation_db: float = -15.0  # keep learning the coupling from frames the
    muted_power: float = 100.0  # canceller cut this much, unless its output was muted
    geigel_margin_db: float = 3.0
    recent_frames: int = 16  # the canceller's recent record, to notice it losing the echo
    model_certified_db: float = 10.0  # the spectral model cancelled this much: echo only
    model_margin_db: float = 6.0  # over its 95th-percentile ratio (its tail is longer)
    model_quick_margin_db: float = 12.0  # over its median ratio, until 16 frames are in


class EchoGate:
    """Stateful per-stream decision; `decide` once per microphone frame, in order."""

    def __init__(self, params: GateParams | None = None) -> None:
        self.params = params or GateParams()
        self._powers: deque[tuple[float, float]] = deque(maxlen=self.params.erle_frames)
        self._hold = 0
        self._evidence = 0  # consecutive frames that looked like near-end speech
        self._age = 0  # frames with echo since the canceller (re)started
        self._onset = 0  # frames left in the current burst's no-credit start
        self._coupling: deque[float] = deque(maxlen=self.params.coupling_frames)
        self._aligned = False  # the coupling was learned against an aligned echo window
        self._recent: deque[tuple[float, float]] = deque(maxlen=self.params.recent_frames)
        self._model: deque[float] = deque(maxlen=self.params.coupling_frames)
        self._learned: dict[int, float] = {}  # id of a ratio deque -> its learned dB, cached

    @property
    def suspects_speech(self) -> bool:
        """The last frame held evidence of a person, not yet confirmed."""
        return self._evidence > 0

    @property
    def hearing_speech(self) -> bool:
        """A person's voice was confirmed and its hangover still runs."""
        return self._hold > 0

    @property
    def model_gain_db(self) -> float:
        """What the spectral echo model leaves of the loudest echo-able reference, learned
        like the coupling (the same percentile and margins) from echo-only frames; never
        more than the coupling itself (a useless model leaves the microphone as it was)."""
        return min(self._learned_db(self._model, model=True), self.echo_gain_db)

    def forget_model(self, record: Sequence[tuple[float, float, float]] = ()) -> None:
        """The spectral model restarted: its record no longer holds. `record` is the new
        model's (mic, residual, narrow bound) on the echo-only frames it was fitted to,
        each predicted before it was learned."""
        self._model.clear()
        self._learned.clear()
        for mic, left, bound in record:
            if bound >= ACTIVE_FRAME_POWER and mic > 10 * self.params.floor_power:
                self._model.append(left / bound)

    @property
    def echo_gain_db(self) -> float:
        """The echo path gain the gate assumes: the configured worst case, or less once
        echo-only frames showed the coupling is weaker."""
        return self._learned_db(self._coupling)

    def _learned_db(self, ratios: deque[float], model: bool = False) -> float:
        """A high percentile of echo-only frames' power over the loudest echo-able
        reference, plus a margin, never above the configured worst case. The model's
        residual has a longer tail (a sound it has not heard yet), so it gets a wider
        margin."""
        cached = self._learned.get(id(ratios))
        if cached is None:
            cached = self._learned[id(ratios)] = self._learn_db(ratios, model)
        return cached

    def _learn_db(self, ratios: deque[float], model: bool) -> float:
        p = self.params
        n = len(ratios)
        if model and n >= p.coupling_min_frames:
            ratio = _percentile(ratios, p.coupling_percentile)
            margin = p.model_margin_db
        elif model and n >= p.coupling_quick_frames:
            # Fitted to the echo heard while the delay was being found, which may end in
            # a voice hidden in it (a user who spoke at once): the middle of the record,
            # not its loudest, with a wide margin.
            ratio = _percentile(ratios, 50.0)
            margin = p.model_quick_margin_db
        elif n >= p.coupling_min_frames:
            ratio = _percentile(ratios, p.coupling_percentile)
            margin = p.coupling_margin_db
        elif self._aligned and n >= p.coupling_quick_frames:
            # A short stretch of echo at the measured delay: its loudest frame is a floor
            # under the ratio, not an estimate of it; the extra margin covers the rest.
            ratio = max(ratios)
            margin = p.coupling_margin_db + p.coupling_quick_margin_db
        else:
            return p.max_echo_gain_db
        learned = 10 * np.log10(max(ratio, 1e-6))
        return float(min(p.max_echo_gain_db, learned + margin))

    @property
    def erle_db(self) -> float:
        """The cancellation the gate currently credits the canceller with."""
        if len(self._powers) < self.params.erle_frames // 3:
            return 0.0
        mic, residual = np.sum(np.array(self._powers), axis=0)
        erle = 10 * np.log10(mic / max(residual, 1.0))
        return float(min(max(erle, 0.0), self.params.max_erle_db))

    @property
    def recent_erle_db(self) -> float | None:
        """Cancellation over the last frames no louder than echo (talk included, so it
        errs low): drops at once if the canceller loses the echo path."""
        if len(self._recent) < self.params.recent_frames // 2:
            return None
        mic, residual = np.sum(np.array(self._recent), axis=0)
        return float(max(10 * np.log10(mic / max(residual, 1.0)), 0.0))

    def _cancelled_well(self, mic: float, residual: float, model: float | None) -> bool:
        """The canceller took most of this frame yet left some of it (AEC3 mutes its
        output outright when it is unsure, voice included): it held the bot's echo, not a
        person, whom a canceller cannot remove. Only such frames keep teaching the coupling
        once the delay is known, so a voice the gate missed cannot raise it. While AEC3 is
        new (`settle_frames`) its suppression proves nothing (it mutes a voice as well):
        then only the spectral model's cancellation certifies a frame."""
        p = self.params
        if model is not None and model * 10 ** (p.model_certified_db / 10) <= mic:
            return True
        settled = self._age > p.settle_frames
        certified = mic * 10 ** (p.certified_cancellation_db / 10)
        return settled and p.muted_power < residual <= certified

    def forget_erle(self) -> None:
        """The canceller restarted: what it achieved before no longer holds."""
        self._powers.clear()
        self._recent.clear()
        self._age = 0

    def relearn_coupling(self, frames: list[tuple[float, float]]) -> None:
        """Learn the coupling afresh from (mic, narrow echo bound) pairs of echo-only
        frames: the delay was just measured (or moved), so the ratios learned against the
        old window no longer hold."""
        self._coupling.clear()
        self._learned.clear()
        self._aligned = True
        for mic, bound in frames:
            if bound >= ACTIVE_FRAME_POWER and mic > 10 * self.params.floor_power:
                self._coupling.append(mic / bound)

    def decide(
        self,
        echo_bound: float,
        mic: float,
        residual: float,
        aligned: bool,
        narrow_bound: float | None = None,
        model: float | None = None,
    ) -> bool:
        """True if the frame is echo only: a speech onset in it must be ignored.
        `narrow_bound` is the bound at the measured delay, when there is one, even where
        `echo_bound` had to be the wide one: the coupling is learned against it. `model`
        is the frame's power left by the spectral echo model, once it has one."""
        p = self.params
        if echo_bound < ACTIVE_FRAME_POWER:
            self._hold = 0
            self._evidence = 0
            self._onset = p.onset_frames
            return False
        max_echo = echo_bound * 10 ** (self.echo_gain_db / 10)
        if (
            aligned
            and mic > 10 * p.floor_power
            and mic <= max_echo * 10 ** (p.geigel_margin_db / 10)
        ):
            self._recent.append((mic, residual))
        erle_db = self.erle_db if aligned and not self._onset else 0.0
        recent = self.recent_erle_db
        if recent is not None:
            erle_db = min(erle_db, recent)
        self._onset = max(self._onset - 1, 0)
        threshold = max_echo * 10 ** (-max(erle_db - p.margin_db, 0.0) / 10)
        share = 10 ** (p.min_residual_share_db / 10)
        cancelled = residual > threshold and residual > p.floor_power and residual > mic * share
        # Geigel's rule as well: a microphone louder than any echo could be holds a person,
        # whatever the canceller made of it (a new AEC3 suppresses near-end speech too).
        louder = mic > max_echo * 10 ** (p.geigel_margin_db / 10) and mic > p.floor_power
        # The spectral model's residual, like the canceller's, against the loudest echo
        # less what the model is seen to remove (a voice at the echo's level stays in it).
        # A residual above the microphone itself is the model mispredicting (the echo
        # slipped, or new sounds), not a voice: no evidence either way.
        modelled = False
        if model is not None and aligned and model < mic:
            left = echo_bound * 10 ** ((self.model_gain_db + p.geigel_margin_db) / 10)
            modelled = model > left and model > p.floor_power and model > mic * share
        if cancelled or louder or modelled:
            self._evidence += 1
        else:
            self._evidence = 0
        if self._evidence >= p.confirm_frames:
            self._hold = p.hangover_frames
            return False
        speechlike = self._evidence or residual > mic * 10 ** (p.hangover_break_db / 10)
        if self._hold and speechlike:
            self._hold -= 1  # a pause between syllables: still the person's turn
            return False
        self._hold = 0
        # Learn what the canceller achieves from echo-only frames alone: one loud frame of
        # a person talking would otherwise wipe out the credit just when it is needed.
        if aligned:
            self._age += 1
        settled = aligned and self._age > p.settle_frames
        if settled and not self._evidence and mic > 10 * p.floor_power and mic > max_echo * 1e-3:
            self._powers.append((mic, residual))
        if not self._evidence and mic > 10 * p.floor_power:
            if model is not None and aligned and model < mic:
                self._model.append(model / echo_bound)
                self._learned.clear()
            if narrow_bound is None:
                if not self._aligned:
                    self._coupling.append(mic / echo_bound)
                    self._learned.clear()
            elif narrow_bound >= ACTIVE_FRAME_POWER and self._cancelled_well(mic, residual, model):
                self._coupling.append(mic / narrow_bound)
                self._learned.clear()
        return True


def _percentile(values: deque[float], q: float) -> float:
    """`np.percentile` (linear interpolation) of a short sequence, ten times cheaper."""
    ordered = sorted(values)
    at = (len(ordered) - 1) * q / 100
    lo = int(at)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (at - lo)
