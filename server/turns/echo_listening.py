"""The caller's audio with the bot's own voice taken out, and nothing the caller said lost.

`EchoListener` sits in front of the VAD and the segmenter of one call:

- `echo_guard: "off"`: frames pass as they are.
- `"on"`: the `EchoGuard` cancels the bot's voice and its verdict gates each frame: an
  echo-only frame reaches the segmenter with a speech probability of 0.
- `"auto"` (experimental; the server default is `"off"`): the guard runs and gates while
  its `EchoPresence` has not ruled the echo out. The client that sends no echo back (a
  browser's AEC) is known within ~2.2 s of its first reply, or ~320 ms into its user's
  voice over that reply (a voice held back with no echo found in it, replayed from its
  onset); from then on nothing is gated, so its barge-in is as fast as with the guard
  off. Before that, from a held voice's 3rd voiced frame to its 6th, `OnsetCheck` asks
  whether echo at any delay could sound like it (the delays the quiet microphone before
  it ruled out, the frames too loud to be echo, the waveforms at the delays left); a
  "no" replays it at once (~32 ms later than with the guard off on the simulated
  client) and leaves the call's echo unknown. A client that echoes is found within
  ~150-400 ms of its first reply's echo.

Gating can hide a person: a voice at the bot's own level over an echo the guard has not
learned yet is judged echo. So a voiced frame that the gate holds back is kept (with
the ~300 ms before it, the segmenter's padding), and handed back to the caller to replay
into the segmenter when it turns out to be speech: when the gate lets the same voice
through a moment later, when the echo is ruled out, or when the reply's echo has ended
and the held voice carried the gate's evidence of a person (`suspect` frames: a frame
of pure echo almost never does). The segmenter then starts the turn where the voice
began, and it is transcribed and answered like any other. Held frames with no such
evidence were the echo itself (the first reply's, before the canceller converged) and
are dropped.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from media.echo.guard import EchoGuard, EchoVerdict
from media.echo.presence import Presence
from server.turns.options import EchoGuardMode

log = logging.getLogger("hark.echo")

PADDING_FRAMES = 10  # ~320 ms before a held voice: the segmenter's prefix padding
MAX_HELD_FRAMES = 940  # ~30 s, the longest segment
SHORT_VOICE_FRAMES = 3  # voiced frames held while the echo is unknown, and
SHORT_VOICE_END_FRAMES = 4  # ... unvoiced ones after them: a short voice that ended
NO_ECHO_PEAK = 15.0  # ... in which no waveform search peaked this high (an echo does)
ONSET_VOICED_FRAMES = 3, 6  # voiced frames held while the echo is unknown from which,
# and up to which, each asks whether the voice could be echo (`OnsetCheck`); "no"
# replays it at once (each further check is one more chance to mistake an echo)
REPLAY_MIN_SUSPECTS = 4  # voiced frames with the gate's evidence of a person for a held
# voice to be replayed once the echo ends


@dataclass(frozen=True)
class HeldFrame:
    frame: np.ndarray  # as the guard cleaned it
    raw: np.ndarray  # as it came: what is replayed once the echo is ruled out
    probability: float  # the VAD's, on the cleaned frame
    audio_end_ms: int


@dataclass
class Heard:
    frame: np.ndarray  # what the VAD and the segmenter get
    probability: float  # 0 where the frame is held back as echo
    replay: list[HeldFrame] = field(default_factory=list)  # to push first, oldest first


class EchoListener:
    """One call's echo handling in front of the segmenter; `hear` every inbound frame."""

    def __init__(self, mode: EchoGuardMode) -> None:
        self.mode = mode
        self.guard = EchoGuard()
        self._recent: deque[HeldFrame] = deque(maxlen=PADDING_FRAMES)
        self._held: list[HeldFrame] = []
        self._suspects = 0
        self._loud = 0  # held voiced frames the gate passed: louder than any echo
        self._voiced = 0  # held voiced frames
        self._quiet_run = 0  # unvoiced frames since the last voiced one held
        self._onset: list[bool] = []  # voiced, per frame held since the echo-unknown hold began
        self._presence = self.guard.presence.state

    @property
    def gating(self) -> bool:
        return self.mode == "on" or self.guard.presence.gating

    @property
    def holding(self) -> bool:
        return bool(self._held)

    def far_end(self, pcm: np.ndarray, sent_at: float) -> None:
        self.guard.far_end(pcm, sent_at)

    def hear(
        self,
        frame: np.ndarray,
        audio_end_ms: int,
        vad: Callable[[np.ndarray], float],
        threshold: float,
        *,
        in_turn: bool,
        now: float | None = None,
    ) -> Heard:
        """`in_turn`: the segmenter is inside a turn already (whatever is held back now
        is part of that turn's audio, so nothing is kept for replay); `now`: when the
        frame arrived (default: the guard's clock)."""
        verdict = self.guard.near_end(frame, audio_end_ms, now)
        presence = self.guard.presence.state
        if presence is not self._presence:
            self._presence = presence
            log.info(
                "echo from the client: %s (%s, at %d ms)",
                presence.value,
                self.guard.presence.reason,
                audio_end_ms,
            )
            if presence is Presence.ECHO and self._held:
                self._drop()  # what was held was the echo just found in it
        if not self.gating:
            # No echo from this client: the microphone as it came, as with no guard.
            probability = vad(frame)
            replay = self._release(in_turn) if self._held else []
            return Heard(frame, probability, replay)
        unknown = self.mode == "auto" and presence is Presence.UNKNOWN
        # While the echo is unknown the VAD hears the microphone as it came: a canceller
        # that is still new suppresses a voice along with the echo, and the voice rule
        # must hear the voice to rule the echo out.
        probability = vad(frame if unknown else verdict.frame)  # always run: VAD state
        here = HeldFrame(verdict.frame, frame, probability, audio_end_ms)
        voiced = probability >= threshold
        if self._hold(verdict, voiced, unknown, in_turn):
            self._loud += voiced and not verdict.echo_only  # louder than any echo could be
            self._voiced += voiced
            if voiced and unknown and self.guard.presence.voice_held(self.guard.waveform_peak):
                # A voice held this long with no echo found in it: the client sends none.
                return Heard(frame, probability, self._release(in_turn))
            if unknown:
                self._onset.append(voiced)
                if (
                    voiced
                    and ONSET_VOICED_FRAMES[0] <= self._voiced <= ONSET_VOICED_FRAMES[1]
                    and not self._could_be_echo()
                ):
                    # Echo at no delay could sound like this: a person. Heard now, from
                    # its onset; the call's echo stays unknown.
                    log.info(
                        "held voice is no echo (onset check, %d frames, at %d ms)",
                        len(self._onset),
                        audio_end_ms,
                    )
                    return Heard(frame, probability, self._release(in_turn))
            self._quiet_run = 0 if voiced else self._quiet_run + 1
            if unknown and self._short_voice():
                # A short voice that has ended (a backchannel, a cough) with no echo
                # peak in it: replayed now, while the reply it may pause still plays.
                self._held.append(here)
                return Heard(verdict.frame, 0.0, self._release(in_turn))
            if not self._held:
                self._held = list(self._recent)
            self._held.append(here)
            self._suspects += verdict.suspect and voiced
            if len(self._held) > MAX_HELD_FRAMES:
                del self._held[0]
            return Heard(verdict.frame, 0.0)
        if self._held and in_turn:
            self._drop()  # a turn began: what was held is in its audio
        if in_turn and unknown:
            # A turn that began before the bot spoke goes on as it is heard: gating it on
            # a guess would cut the user off mid-sentence. An echo, if any, is found
            # within ~150-400 ms and gated from then on.
            return Heard(frame, probability)
        if verdict.echo_only:
            self._recent.append(here)
            return Heard(verdict.frame, 0.0)
        # The gate let a voice through (the segmenter's padding holds its start), or the
        # echo is over: a held voice the gate had seen a person in is replayed.
        replay: list[HeldFrame] = []
        # (With the echo unknown, frames louder than any echo could be are a voice too,
        # and so is a short voice, a backchannel, in which no echo peaked.)
        quiet_hold = (
            unknown
            and self._voiced >= SHORT_VOICE_FRAMES
            and self.guard.presence.hold_peak < NO_ECHO_PEAK
        )
        if self._held and (self._suspects >= REPLAY_MIN_SUSPECTS or self._loud >= 2 or quiet_hold):
            log.debug("held voice: %d frames, %d suspect", len(self._held), self._suspects)
            replay = self._release(in_turn)
        elif self._held:
            self._drop()
        self._recent.append(here)
        return Heard(verdict.frame, probability, replay)

    def _could_be_echo(self) -> bool:
        could = self.guard.voice_could_be_echo(self._onset)
        if could and self._voiced == ONSET_VOICED_FRAMES[1]:
            check = self.guard.onset_check
            log.info(
                "held voice may be echo (onset check: %d lags left, correlation %.2f, peak %.1f)",
                check.last_lags,
                check.last_correlation,
                check.last_peak,
            )
        return could

    def _short_voice(self) -> bool:
        return (
            self._voiced >= SHORT_VOICE_FRAMES
            and self._quiet_run >= SHORT_VOICE_END_FRAMES
            and self.guard.presence.hold_peak < NO_ECHO_PEAK
        )

    def _hold(self, verdict: EchoVerdict, voiced: bool, unknown: bool, in_turn: bool) -> bool:
        """Whether this frame is held back. Not inside a turn, nor once the echo is over.
        While the echo is not yet known every voice is (the gate may pass a frame of the
        echo as a person); once known, a hold starts where the gate saw a person and
        still judged the frame echo, and goes on while it does."""
        if in_turn or not verdict.echo_window:
            return False
        if self._held:
            return verdict.echo_only or unknown
        return voiced and (unknown or (verdict.echo_only and verdict.suspect))

    def _release(self, in_turn: bool) -> list[HeldFrame]:
        held = [] if in_turn else self._held
        self._drop()
        return held

    def _drop(self) -> None:
        self._held = []
        self._suspects = 0
        self._loud = 0
        self._voiced = 0
        self._quiet_run = 0
        self._onset = []
        self._recent.clear()
        self.guard.presence.release()
