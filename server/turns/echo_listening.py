"""The caller's audio with the bot's own voice taken out, and nothing the caller said lost.

`EchoListener` sits in front of the VAD and the segmenter of one call:

- `echo_guard: "off"`: frames pass as they are.
- `"on"`: the `EchoGuard` cancels the bot's voice and its verdict gates each frame: an
  echo-only frame reaches the segmenter with a speech probability of 0.
- `"auto"` (the server default): the guard runs and gates while
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
began, and it is transcribed and answered like any other. A hold with no such evidence
is dropped only where what was sent explains it (`EchoGuard.explain_held`,
media/echo/held.py: the echo of the first reply, before the canceller converged); a
sound the echo that best fits the hold leaves (a soft question under the echo, which
the gate's learned margins miss) is replayed with that echo taken out once the echo
ends, and a later refit of the echo model or the coupling leaves its frames out
(`EchoGuard.not_echo`). Where the fit explains too little of the hold's echo itself (a
reverberant room) it proves nothing, and the hold is dropped as before, unless the
call's echo is still unknown and the hold had a voice: then it is transcribed, and
replayed if its words are not the bot's own (`OwnWords`: a question every acoustic rule
missed, once in ~5 full test runs, was lost there).

After the bot falls silent (a barge-in paused its reply) the guard judges each frame
against the echo anywhere in its window for ~1.6 s more (a path that moved could still
bring some), and flags the frames where nothing at the measured delay can echo any more
(`past_echo`). Those are not taken for echo on that alone: in a turn they are heard as
they came (gated, "What time is it?" after "Wait, stop." was silence that ended the
turn, and was never answered), and out of one a voice is held and judged by what was
sent, replayed unless a moved echo explains it (no fit here explains "too little to
tell": there is no echo at the measured delay left to explain).

Those judgements (the fits, refits and onset checks, ~2-30 ms of numpy each) are yielded
by `steps` as `Offload` work: `TurnTaking` runs them on a worker thread while the call's
later frames wait their turn (server.turns.off_loop); `hear` runs them inline. The
transcription of an unjudged hold is `Awaited` work (Whisper has its own thread).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial

import numpy as np

from media.echo.guard import EchoGuard, EchoVerdict
from media.echo.presence import Presence
from media.echo.refit import EchoRefit
from media.levels import mean_power
from server.turns.off_loop import Awaited, Offload, Steps, run_here
from server.turns.options import EchoGuardMode
from server.turns.own_words import OwnWords

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
UNEXPLAINED_DB = -6.0  # a held voiced frame of which what was sent cannot explain this
UNEXPLAINED_POWER = 3000.0  # ... much, and more than this (~ -55 dBFS), holds a person,
MISFIT_DB = 1.0  # ... but no more than this over the frame itself
UNEXPLAINED_RUN = 5  # ... and a hold with this many such frames in a row is replayed
TAIL_FRAMES, TAIL_DB = 5, -12.0  # ... and what is left is no more than this under the
# loudest frame of the ~160 ms up to it
EXPLAINED_DB, EXPLAINED_SHARE = -10.0, 0.5  # the fit must leave this little of at least
# this share of the hold's loud frames for what it leaves to count,
MIN_ECHO_FRAMES = 8  # ... judged on those before the voice where there are this many
CHECK_BEFORE, CHECK_AFTER = 4, 12  # frames around a run fitted again, as a second opinion
MAX_CHECKS = 4  # ... on at most this many runs of one hold
CHUNK_FRAMES = 16  # held frames judged at a time (`explain_held`), while the hold goes on


@dataclass(frozen=True)
class HeldFrame:
    frame: np.ndarray  # as the guard cleaned it
    raw: np.ndarray  # as it came: what is replayed once the echo is ruled out
    probability: float  # the VAD's, on the cleaned frame
    audio_end_ms: int
    echo_left: float | None = None  # the power the guard's echo model left of it, if any


@dataclass
class Heard:
    frame: np.ndarray  # what the VAD and the segmenter get
    probability: float  # 0 where the frame is held back as echo
    replay: list[HeldFrame] = field(default_factory=list)  # to push first, oldest first


class EchoListener:
    """One call's echo handling in front of the segmenter; `hear` (or `steps`) every
    inbound frame, in order."""

    def __init__(self, mode: EchoGuardMode) -> None:
        self.mode = mode
        self.guard = EchoGuard()
        self._recent: deque[HeldFrame] = deque(maxlen=PADDING_FRAMES)
        self._held: list[HeldFrame] = []
        # (power left, frame less the echo) per held frame judged so far (`explain_held`),
        # a chunk at a time while the hold goes on: the reference for it is kept ~6 s
        self._judged: list[tuple[float | None, np.ndarray]] = []
        self._suspects = 0
        self._loud = 0  # held voiced frames the gate passed: louder than any echo
        self._voiced = 0  # held voiced frames
        self._quiet_run = 0  # unvoiced frames since the last voiced one held
        self._onset: list[bool] = []  # voiced, per frame held since the echo-unknown hold began
        self._past_only = True  # every voiced frame held came after the measured echo
        self._presence = self.guard.presence.state
        # The last resort on a voice held while the echo is unknown that no rule could
        # judge: its words, against the bot's (None: dropped unjudged, as offline)
        self.own_words: OwnWords | None = None
        # What the transcript hears: the microphone less the echo, fitted after the fact
        self.refit = EchoRefit(self.guard.explain_held)

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
        """`steps`, every one of them on this thread (tests, benches, offline replays)."""
        return run_here(self.steps(frame, audio_end_ms, vad, threshold, in_turn=in_turn, now=now))

    def steps(
        self,
        frame: np.ndarray,
        audio_end_ms: int,
        vad: Callable[[np.ndarray], float],
        threshold: float,
        *,
        in_turn: bool,
        now: float | None = None,
    ) -> Steps[Heard]:
        """`in_turn`: the segmenter is inside a turn already (whatever is held back now
        is part of that turn's audio, so nothing is kept for replay); `now`: when the
        frame arrived (default: the guard's clock). A decision on a held voice yields its
        numpy work (`Offload`), for a worker thread (server.turns.off_loop): while it is
        computed, nothing else may call this listener, its guard or `vad`."""
        # Settled echo-free, nothing the canceller makes is used (frames pass as they came).
        self.guard.cancelling = self.gating
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
                # What was held was the echo just found in it. (Judging it by what was sent
                # here, as at the end of a hold, took the onset of a room's echo for a
                # voice: a fit to its first few frames explains too little of them.) A
                # person under it is held again from here (`_hold`), and judged later.
                self._drop()
        # (Not while the echo is unknown: a client that returns none would have its voice
        # fitted to a reply it never heard; a backchannel came out as "Right now.")
        echoing = verdict.echo_window and not (self.mode == "auto" and presence is Presence.UNKNOWN)
        if self.gating and self.refit.add(frame, audio_end_ms, echo_window=echoing):
            yield Offload(self.refit.fit)
        if not self.gating:
            # No echo from this client: the microphone as it came, as with no guard.
            probability = vad(frame)
            replay = self._release(in_turn) if self._held else []
            return Heard(frame, probability, replay)
        unknown = self.mode == "auto" and presence is Presence.UNKNOWN
        # While the echo is unknown the VAD hears the microphone as it came: a canceller
        # that is still new suppresses a voice along with the echo, and the voice rule
        # must hear the voice to rule the echo out.
        # So does a frame the measured echo has left (`past_echo`): nothing of it is echo
        # unless the echo path moved.
        heard_raw = unknown or verdict.past_echo
        probability = vad(frame if heard_raw else verdict.frame)  # always run: VAD state
        here = HeldFrame(verdict.frame, frame, probability, audio_end_ms, verdict.echo_left)
        voiced = probability >= threshold
        if self._hold(verdict, frame, voiced, unknown, in_turn):
            self._loud += voiced and not verdict.echo_only  # louder than any echo could be
            self._voiced += voiced
            if voiced and unknown and self.guard.presence.voice_held(self.guard.waveform_peak):
                # A voice held this long with no echo found in it: the client sends none.
                return Heard(frame, probability, self._release(in_turn, raw=True))
            if unknown:
                self._onset.append(voiced)
                if (
                    voiced
                    and ONSET_VOICED_FRAMES[0] <= self._voiced <= ONSET_VOICED_FRAMES[1]
                    and not (yield from self._could_be_echo())
                ):
                    # Echo at no delay could sound like this: a person. Heard now, from
                    # its onset; the call's echo stays unknown.
                    log.info(
                        "held voice is no echo (onset check, %d frames, at %d ms)",
                        len(self._onset),
                        audio_end_ms,
                    )
                    return Heard(frame, probability, self._release(in_turn, raw=True))
            self._quiet_run = 0 if voiced else self._quiet_run + 1
            if unknown and self._short_voice():
                # A short voice that has ended (a backchannel, a cough) with no echo
                # peak in it: replayed now, while the reply it may pause still plays.
                self._held.append(here)
                return Heard(verdict.frame, 0.0, self._release(in_turn, raw=True))
            if not self._held:
                self._held = list(self._recent)
            self._held.append(here)
            self._past_only = self._past_only and (verdict.past_echo or not voiced)
            self._suspects += verdict.suspect and voiced
            if len(self._held) > MAX_HELD_FRAMES:
                del self._held[0]
                if self._judged:
                    del self._judged[0]
            if len(self._held) - len(self._judged) >= CHUNK_FRAMES:
                yield Offload(self._judge_held)
            return Heard(verdict.frame, 0.0)
        if self._held and in_turn:
            self._drop()  # a turn began: what was held is in its audio
        if in_turn and unknown:
            # A turn that began before the bot spoke goes on as it is heard: gating it on
            # a guess would cut the user off mid-sentence. An echo, if any, is found
            # within ~150-400 ms and gated from then on.
            return Heard(frame, probability)
        if in_turn and verdict.past_echo:
            # The bot fell silent (the turn paused its reply) and its echo at the measured
            # delay is over: the user's turn goes on as heard.
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
            replay = self._release(in_turn, raw=unknown)
        elif self._held:
            replay = yield from self._unless_echo(in_turn, vad)
        self._recent.append(here)
        return Heard(verdict.frame, probability, replay)

    def _unless_echo(
        self, in_turn: bool, vad: Callable[[np.ndarray], float]
    ) -> Steps[list[HeldFrame]]:
        """A hold the gate saw too little of a person in: replayed all the same where what
        was sent leaves a sound in it, else dropped as the echo it was. (Judging it, the
        VAD on what the echo leaves included, is the worker's.)"""
        voice: list[HeldFrame] = yield Offload(partial(self._voice_in_hold, vad))
        if voice:
            log.info(
                "held voice is no echo (what was sent leaves it: %d frames, at %d ms)",
                len(voice),
                voice[-1].audio_end_ms,
            )
            self.guard.not_echo([h.audio_end_ms for h in voice])
            self._held = voice
            return self._release(in_turn)
        if self.guard.presence.state is Presence.UNKNOWN and self._voiced >= SHORT_VOICE_FRAMES:
            # Rare: every rule that hears a person missed it (a chance waveform peak in
            # the hold disables two). Logged with what decided it; then its words tell.
            log.info(
                "held voice unjudged while the echo is unknown: %d frames from %d ms to"
                " %d ms, %d voiced, %d suspect, %d loud, waveform peak %.1f",
                len(self._held),
                self._held[0].audio_end_ms,
                self._held[-1].audio_end_ms,
                self._voiced,
                self._suspects,
                self._loud,
                self.guard.presence.hold_peak,
            )
            if self.own_words is not None:
                audio = np.concatenate([h.raw for h in self._held])
                own: bool = yield Awaited(partial(self.own_words.are_own, audio))
                if not own:
                    log.info("held voice is no echo (its words are not the bot's): replayed")
                    return self._release(in_turn, raw=True)
        self._drop()
        return []

    def _judge_held(self) -> None:
        """The held frames not yet judged, by what was sent (`EchoGuard.explain_held`):
        ~4 ms of numpy per `CHUNK_FRAMES`, for a worker thread (`Offload`)."""
        fresh = self._held[len(self._judged) :]
        if fresh:
            judged = self.guard.explain_held([(h.raw, h.audio_end_ms) for h in fresh])
            self._judged += zip(judged.left, judged.cleaned, strict=True)

    def _voice_in_hold(self, vad: Callable[[np.ndarray], float]) -> list[HeldFrame]:
        """The held sound that what was sent cannot explain: from the padding before its
        first run of `UNEXPLAINED_RUN` frames that the best-fitting echo leaves
        `UNEXPLAINED_DB` of, with that echo taken out and heard again by the VAD (the
        canceller had carved it); else []. Refits and VAD included, up to ~30 ms: a
        worker thread's (`Offload`)."""
        self._judge_held()
        run, first, checks = 0, None, 0
        powers = [mean_power(h.raw) for h in self._held]
        for i, (held, (left, _)) in enumerate(zip(self._held, self._judged, strict=True)):
            # As loud as the echo around it, too: a room's reverb tail, which the fit
            # explains poorly, is quieter than the words it follows.
            recent = max(powers[max(i - TAIL_FRAMES, 0) : i + 1])
            loud = left is not None and left >= recent * 10 ** (TAIL_DB / 10)
            # (and what the guard's own model left of it as it came, where it had one: it
            # follows the echo when a client's playout slips, a fit to the hold cannot)
            live = held.echo_left is None or _unexplained(held.echo_left, held.raw)
            run = run + 1 if loud and live and _unexplained(left, held.raw) else 0
            if run == UNEXPLAINED_RUN:
                if self._still_unexplained(i - run + 1):
                    first = i - run + 1
                    break
                checks += 1
                if checks == MAX_CHECKS:
                    break
                run = 0
        if first is None:
            return []
        # (A voice held after the measured echo was over has no echo for the fit to
        # explain: what it leaves is the voice.)
        if not self._past_only and not self._fit_explains_echo(powers, first):
            log.info(
                "held voice: what was sent explains too little of it to tell (voice from"
                " frame %d of %d)",
                first,
                len(self._held),
            )
            return []
        start = max(first - PADDING_FRAMES, 0)
        voice = []
        for i in range(start, len(self._held)):
            held, (_, cleaned) = self._held[i], self._judged[i]
            probability = vad(cleaned)  # in order: the frames just before this one
            # the padding as the segmenter's: audio before the voice, not a voice
            voice.append(
                HeldFrame(cleaned, held.raw, probability if i >= first else 0.0, held.audio_end_ms)
            )
        return voice

    def _fit_explains_echo(self, powers: list[float], first: int) -> bool:
        """Only a fit that explains most of the echo leaves proof of a person: in a
        reverberant room it explains little of the echo itself. Judged on the hold's
        loud frames before the voice (`first`), the echo the hold began on: a question
        that fills most of a hold is not explained by what was sent, and taking its
        frames as the fit's failures dropped it (a soft question 10 dB under a first
        reply's echo, 1 full-suite run in ~10). With too few of those, on all of them."""

        def loud(frames: range) -> list[tuple[float, float]]:
            pairs = ((powers[i], self._judged[i][0]) for i in frames)
            return [(p, x) for p, x in pairs if p > 10 * UNEXPLAINED_POWER and x is not None]

        judged = loud(range(first))
        if len(judged) < MIN_ECHO_FRAMES:
            judged = loud(range(len(powers)))
        explained = sum(left <= p * 10 ** (EXPLAINED_DB / 10) for p, left in judged)
        return explained >= EXPLAINED_SHARE * len(judged)

    def _still_unexplained(self, first: int) -> bool:
        """A second opinion on a run of unexplained frames from `first` on: fitted again
        over the ~0.5 s around it alone, where the echo may sit at a delay of its own (a
        client's playout stalled under load and resumed later: the part the run was
        judged in straddled both delays), it still leaves them."""
        around = self._held[max(first - CHECK_BEFORE, 0) : first + CHECK_AFTER]
        judged = self.guard.explain_held([(h.raw, h.audio_end_ms) for h in around])
        offset = first - max(first - CHECK_BEFORE, 0)
        run = zip(around[offset:], judged.left[offset:], strict=True)
        return all(_unexplained(left, h.raw) for h, left in list(run)[:UNEXPLAINED_RUN])

    def _could_be_echo(self) -> Steps[bool]:
        could: bool = yield Offload(partial(self.guard.voice_could_be_echo, self._onset))
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

    def _hold(
        self, verdict: EchoVerdict, raw: np.ndarray, voiced: bool, unknown: bool, in_turn: bool
    ) -> bool:
        """Whether this frame is held back. Not inside a turn, nor once the echo is over.
        While the echo is not yet known every voice is (the gate may pass a frame of the
        echo as a person); once known, a hold starts where the gate saw a person and
        still judged the frame echo, or where the echo model leaves `UNEXPLAINED_DB` of
        a voiced frame the gate judged echo (a soft voice under the echo, which the
        gate's learned margins miss), and goes on while the gate judges it echo."""
        if in_turn or not verdict.echo_window:
            return False
        if self._held:
            return verdict.echo_only or unknown
        if not voiced or not (unknown or verdict.echo_only):
            return False
        if unknown or verdict.suspect or verdict.past_echo:
            return True
        return self.guard.model_useful and _unexplained(verdict.echo_left, raw)

    def _release(self, in_turn: bool, raw: bool = False) -> list[HeldFrame]:
        """What was held, to replay; `raw`: the microphone as it came (a voice found no
        echo while the echo is unknown: a canceller that is still new carved it, and
        Whisper heard "What time is it?" over a first reply as "I miss it"), as the
        turn it starts goes on being heard."""
        held = [] if in_turn else self._held
        if raw:
            held = [replace(h, frame=h.raw) for h in held]
        self._drop()
        return held

    def _drop(self) -> None:
        self._held = []
        self._judged = []
        self._suspects = 0
        self._loud = 0
        self._voiced = 0
        self._quiet_run = 0
        self._onset = []
        self._past_only = True
        self._recent.clear()
        self.guard.presence.release()


def _unexplained(left: float | None, raw: np.ndarray) -> bool:
    """What the echo leaves of a microphone frame (`left`, a mean power) is a sound of
    its own: `UNEXPLAINED_DB` of the frame or more, above the noise, and not more than
    the frame itself held (`MISFIT_DB`): a voice over an echo predicted right leaves at
    most what the microphone heard; more is an echo predicted wrong (an audio clock
    spliced by a stall, a slipped playout)."""
    if left is None or left <= UNEXPLAINED_POWER:
        return False
    power = mean_power(raw)
    return power * 10 ** (UNEXPLAINED_DB / 10) <= left <= power * 10 ** (MISFIT_DB / 10)
