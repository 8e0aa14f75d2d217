"""Listening during a call: VAD, turns, pauses, interruptions, and when a turn is over.

Every inbound 32 ms frame goes through here on the event loop (Silero costs ~0.3 ms):

- The segmenter cuts turns. At each pause inside a turn the turn so far is transcribed
  (`TurnTranscriber`), so the text is ready when the turn ends.
- `semantic_vad` ends a turn as soon as the pause has lasted as long as the words so far
  deserve (`server.turns.end_of_turn`), or, with `HARK_END_OF_TURN=smart_turn`, as the
  audio so far deserves (`server.turns.smart_turn`, judged off the event loop);
  `server_vad` waits its fixed silence.
- When that pause transcript could be a whole turn, the host starts the reply at once,
  held (`speculate`): it is released if the pause ends the turn and dropped if the user
  speaks again, so the wait for the end of the turn overlaps the reply's first clause.
- Speech while a reply is in progress pauses the reply at once (the host silences its
  track on the next 20 ms frame) and opens a `PendingInterruption`: long or wordy speech
  confirms it and the reply is cancelled; a cough or an "uh-huh" resumes the reply.

The host (the session) owns the reply and the events; this class only decides.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import Protocol

import numpy as np

from media.segmenter import (
    SpeechPaused,
    SpeechResumed,
    SpeechSegmenter,
    SpeechStarted,
    SpeechStopped,
)
from media.vad import SileroVad
from server.engines.base import SpeechToText, Transcript
from server.turns.echo_listening import EchoListener, HeldFrame
from server.turns.end_of_turn import WAITS, completeness
from server.turns.interruption import (
    PendingInterruption,
    Verdict,
    bid_text,
    meaningful_words,
    unsure_words,
)
from server.turns.off_loop import InOrder, Offload, Steps
from server.turns.options import EchoGuardMode, TurnDetectionConfig
from server.turns.own_words import OwnWords
from server.turns.smart_turn import SmartTurn
from server.turns.timings import TurnTimings, now
from server.turns.transcriber import TurnTranscriber

log = logging.getLogger("hark.turns")


class TurnHost(Protocol):
    def on_speech_started(self, audio_start_ms: int) -> None: ...

    def on_turn_ended(
        self,
        stopped: SpeechStopped,
        transcript: asyncio.Task[Transcript],
        timings: TurnTimings,
        *,
        noise_over_reply: bool = False,
    ) -> None:
        """`noise_over_reply`: the turn began over a reply and was judged noise; answer it
        only if its transcript turns out to be a bid for the turn (`bid_text`)."""

    def reply_in_progress(self) -> bool: ...

    def said_recently(self) -> str:
        """The text of the bot's latest replies: what its echo could hold."""

    def partial_transcript(self, transcript: str) -> None:
        """The words of the turn so far, transcribed at a pause of the user."""

    def speculate(self, transcript: str) -> None:
        """The user paused after `transcript`, which may be the whole turn: begin its
        reply without showing it."""

    def drop_speculation(self) -> None: ...

    def pause_reply(self, onset_at: float) -> None: ...

    def resume_reply(self) -> None: ...

    def interrupt_reply(self) -> None: ...


class TurnTaking:
    def __init__(
        self,
        vad: SileroVad,
        stt: SpeechToText,
        config: TurnDetectionConfig,
        host: TurnHost,
        *,
        clock: Callable[[], float] = now,
        echo: EchoGuardMode = "off",
        smart_turn: SmartTurn | None = None,
    ) -> None:
        """`smart_turn`: the loaded model, used when the config's `end_of_turn` asks."""
        self.config = config
        self._smart_turn = smart_turn
        self._verdict: asyncio.Task[float] | None = None  # Smart Turn on the current pause
        self._echo: EchoListener | None = None
        self._vad = vad
        self._host = host
        self._stt = stt
        self.use_echo_guard(echo)
        self._clock = clock
        self._segmenter = SpeechSegmenter(config.segmenter_params())
        self._transcriber = TurnTranscriber(stt)
        self._voice_since: float | None = None  # first voiced frame of a possible onset
        self._pause_seq = 0  # bumped when a pause ends, so stale transcripts are ignored
        self._end_after_ms: int | None = None  # semantic_vad: silence that ends this turn
        self._pending: PendingInterruption | None = None
        self._voiced_base = 0  # segmenter.voiced_ms when the pending interruption began
        self._asked_words = False  # the pending interruption's words were asked for
        self._false_this_turn = False
        self._audio_end_ms = 0  # the audio clock at the last frame pushed
        # Frames heard and sent, in order; a decision on a held voice is computed off the
        # loop, and the frames after it wait for it (server.turns.off_loop).
        self._inputs = InOrder("turns")

    @property
    def speaking(self) -> bool:
        return self._segmenter.speaking

    @property
    def pending_interruption(self) -> PendingInterruption | None:
        return self._pending

    def update(self, config: TurnDetectionConfig) -> None:
        self.config = config
        self._segmenter.update(config.segmenter_params())

    @property
    def echo(self) -> EchoListener | None:
        return self._echo

    def use_echo_guard(self, mode: EchoGuardMode) -> None:
        """How the bot's own voice in the caller's audio is handled (`EchoListener`); a
        guard is only built for calls that may need it, and kept while the mode allows."""
        if mode == "off":
            self._echo = None
        elif self._echo is None:
            self._echo = EchoListener(mode)
            self._echo.own_words = OwnWords(self._stt, self._host.said_recently)
        else:
            self._echo.mode = mode

    def far_end(self, pcm: np.ndarray, sent_at: float) -> None:
        """A frame the caller was sent: the echo guard's reference (after the frames heard
        before it were handled: a decision off the loop reads the reference)."""
        if self._echo is not None:
            self._inputs.handle(partial(self._sent, pcm, sent_at))

    def _sent(self, pcm: np.ndarray, sent_at: float) -> None:
        if self._echo is not None:
            self._echo.far_end(pcm, sent_at)

    def close(self) -> None:
        """The call ended: frames still waiting are dropped, a decision being computed
        off the loop is abandoned."""
        self._inputs.close()

    def reset(self) -> None:
        """Forget the turn in progress (input buffer cleared, turn detection changed)."""
        self._segmenter.reset()
        self._transcriber.discard()
        self._host.drop_speculation()
        self._voice_since = None
        self._pause_seq += 1
        self._end_after_ms = None
        self._false_this_turn = False
        if self._pending is not None:
            self._settle(Verdict.FALSE)

    # ---- per frame ------------------------------------------------------------------------

    def push(self, frame: np.ndarray, audio_end_ms: int) -> None:
        """A frame heard: handled now, or once the decision on an earlier one is made
        (as of when it came). Control calls (`reset`, `commit`, `update`) act at once, as
        if they came just before a frame still waiting."""
        at = self._clock()
        now = None if self._echo is None else self._echo.guard.clock()
        self._inputs.handle(partial(self._heard, frame, audio_end_ms, at, now))

    def _heard(
        self, frame: np.ndarray, audio_end_ms: int, at: float, now: float | None
    ) -> Steps[None]:
        self._audio_end_ms = audio_end_ms
        if self._echo is not None:
            # The bot's own voice coming back (glasses have no AEC) must not start a turn;
            # a voice it hid, once known to be one, is replayed first.
            in_turn = self._segmenter.speaking
            heard = yield from self._echo.steps(
                frame, audio_end_ms, self._vad, self.config.threshold, in_turn=in_turn, now=now
            )
            refit = self._echo.refit
            if refit.due_in_silence(heard.probability >= self.config.threshold, in_turn):
                yield Offload(refit.fit)  # what the transcript at a pause or end hears
            if heard.replay:
                self._replay(heard.replay, at)
            frame, probability = heard.frame, heard.probability
        else:
            probability = self._vad(frame)
        self._segment(frame, probability, audio_end_ms, at)
        self._after_frame(at, audio_end_ms)

    def _segment(self, frame: np.ndarray, probability: float, audio_end_ms: int, at: float) -> None:
        if not self._segmenter.speaking:
            if probability >= self.config.threshold:
                self._voice_since = self._voice_since or at
            else:
                self._voice_since = None
        for event in self._segmenter.push(frame, probability, audio_end_ms):
            self._handle(event, at)

    def _replay(self, held: list[HeldFrame], at: float) -> None:
        """Speech the echo gate held back: the segmenter hears it again from the start,
        with the VAD's own verdicts, so the turn begins where the voice did."""
        log.debug("replaying %d frames held back as echo", len(held))
        self._segmenter.reset()
        # With the echo ruled out, the guard's canceller only mangled the voice (a new
        # AEC3 suppresses a voice with the echo): the microphone as it came is replayed.
        raw = self._echo is not None and not self._echo.gating
        for item in held:
            self._segment(item.raw if raw else item.frame, item.probability, item.audio_end_ms, at)

    def _handle(
        self, event: SpeechStarted | SpeechStopped | SpeechPaused | SpeechResumed, at: float
    ) -> None:
        if isinstance(event, SpeechStarted):
            onset_at = self._voice_since or at
            self._voice_since = None
            self._false_this_turn = False
            self._host.on_speech_started(event.audio_start_ms)
            if self.config.interrupt_response and self._host.reply_in_progress():
                self._begin_interruption(onset_at, voiced_base=0)
        elif isinstance(event, SpeechPaused):
            self._on_pause(event)
        elif isinstance(event, SpeechResumed):
            self._pause_seq += 1
            self._transcriber.discard()
            self._host.drop_speculation()
            self._end_after_ms = None
            resumed_noise = self._false_this_turn and self._pending is None
            if resumed_noise and self.config.interrupt_response and self._host.reply_in_progress():
                # Speech again after a false interruption in the same turn: pause again.
                self._begin_interruption(at, voiced_base=self._segmenter.voiced_ms)
        else:
            self._on_stopped(event, at)

    def _after_frame(self, at: float, audio_end_ms: int) -> None:
        pending = self._pending
        if pending is not None:
            if not self._host.reply_in_progress():
                self._pending = None  # the reply ended by itself (or was cancelled)
            else:
                voiced_now = self._segmenter.speaking and not self._segmenter.paused
                voiced = self._segmenter.voiced_ms - self._voiced_base
                verdict = pending.on_voiced(voiced)
                if verdict is Verdict.UNDECIDED and not self._asked_words:
                    if voiced_now and pending.long_enough(voiced):
                        self._ask_for_words(pending)
                if verdict is Verdict.UNDECIDED:
                    silent_ms = self._segmenter.silent_ms if self._segmenter.paused else 0
                    verdict = pending.on_tick(at, voiced_now=voiced_now, silent_ms=silent_ms)
                self._settle(verdict)
        seg = self._segmenter
        wait = self._end_after_ms
        if wait is not None and seg.speaking and seg.paused and seg.silent_ms >= wait:
            stopped = seg.end_turn(audio_end_ms)
            if stopped is not None:
                self._on_stopped(stopped, at)

    def commit(self) -> bool:
        """The client ends the turn in progress now (`input_audio_buffer.commit` with turn
        detection on), as if its silence had come; False when no turn is in progress."""
        stopped = self._segmenter.end_turn(self._audio_end_ms)
        if stopped is None:
            return False
        self._on_stopped(stopped, self._clock())
        return True

    # ---- pauses and turn ends -------------------------------------------------------------

    @property
    def _hears_end_of_turn(self) -> bool:
        """The pause is judged by Smart Turn on the audio, not by the words."""
        wanted = self.config.semantic and self.config.end_of_turn == "smart_turn"
        return wanted and self._smart_turn is not None

    def _without_echo(self, audio: np.ndarray, audio_end_ms: int) -> np.ndarray:
        """A turn's audio as the transcript hears it: with the bot's echo fitted out after
        the fact (`media.echo.refit`), where the listener gated any."""
        return audio if self._echo is None else self._echo.refit.apply(audio, audio_end_ms)

    def _on_pause(self, event: SpeechPaused) -> None:
        self._pause_seq += 1
        pause_id = self._pause_seq
        event = replace(event, audio=self._without_echo(event.audio, event.audio_end_ms))
        job = self._transcriber.start(event.audio)
        job.add_done_callback(lambda task: self._on_pause_transcript(pause_id, task))
        if self._hears_end_of_turn and self._smart_turn is not None:
            verdict = asyncio.create_task(self._smart_turn.predict(event.audio), name="smart-turn")
            verdict.add_done_callback(lambda task: self._on_pause_verdict(pause_id, task))
            self._verdict = verdict

    def _on_pause_verdict(self, pause_id: int, task: asyncio.Task[float]) -> None:
        if task.cancelled():
            return
        failure = task.exception()
        model = self._smart_turn
        if pause_id != self._pause_seq or not self._segmenter.speaking or model is None:
            return
        waits = WAITS[self.config.eagerness]
        if failure is not None:
            log.warning("Smart Turn failed on a pause: %r", failure)
            self._end_after_ms = waits.unsure
            return
        probability = task.result()
        finished = model.complete(probability)
        self._end_after_ms = waits.complete if finished else waits.incomplete
        log.debug(
            "pause sounds %s (Smart Turn %.2f)",
            "finished" if finished else "unfinished",
            probability,
        )

    def _on_pause_transcript(self, pause_id: int, task: asyncio.Task[Transcript]) -> None:
        if task.cancelled() or task.exception() is not None:
            return
        text = _words_of(task.result())
        current = pause_id == self._pause_seq and self._segmenter.speaking
        if self._pending is not None:
            heard = task.result()
            # Unsure words at a pause are no verdict yet: wait for the turn's end (or the
            # timeout). Resuming now would bring the echo back over a user who goes on
            # talking (glasses), hiding the rest of the bid from the gate.
            waiting = not current or unsure_words(heard)
            bid = bid_text(heard)
            if bid or waiting:
                self._settle(self._pending.on_transcript(bid, still_speaking=waiting))
            else:
                self._settle(self._pending.on_wordless_pause(self._segmenter.silent_ms))
        if current and self.config.semantic and not self._hears_end_of_turn:
            self._end_after_ms = WAITS[self.config.eagerness].for_text(text)
            log.debug("pause transcript %r is %s", text, completeness(text))
        if current and text:
            self._host.partial_transcript(text.strip())
        unfinished = self.config.semantic and completeness(text) == "incomplete"
        if current and text and not unfinished and self._pending is None:
            if not self._host.reply_in_progress() and not self._false_this_turn:
                self._host.speculate(text.strip())

    def _on_stopped(self, stopped: SpeechStopped, at: float) -> None:
        stopped = replace(stopped, audio=self._without_echo(stopped.audio, stopped.audio_end_ms))
        self._pause_seq += 1
        self._end_after_ms = None
        pending = self._pending
        judged_noise = pending is None and self._false_this_turn
        rejudge = judged_noise and self.config.interrupt_response and self._host.reply_in_progress()
        self._false_this_turn = False
        transcript, early = self._transcriber.final(stopped.audio, reuse=not rejudge)
        timings = TurnTimings(speech_stopped=at, stt_preemptive=early)
        timings.speech_end = at - stopped.trailing_silence_ms / 1000
        # Both callbacks run before the host's own wait on the transcript resumes, so a
        # reply cancelled here leaves the way clear for the turn to be answered.
        if pending is not None:
            transcript.add_done_callback(lambda task: self._on_final_transcript(pending, task))
        elif rejudge:
            transcript.add_done_callback(self._on_whole_turn_transcript)
        self._host.on_turn_ended(stopped, transcript, timings, noise_over_reply=judged_noise)

    def _on_final_transcript(
        self, pending: PendingInterruption, task: asyncio.Task[Transcript]
    ) -> None:
        if pending is not self._pending:
            return
        failed = task.cancelled() or task.exception() is not None
        text = "" if failed else bid_text(task.result())
        log.debug("interrupting turn ended: %r", "" if failed else task.result().text)
        self._settle(pending.on_transcript(text, still_speaking=self._segmenter.speaking))

    def _on_whole_turn_transcript(self, task: asyncio.Task[Transcript]) -> None:
        """A turn that was judged a false interruption early on (its first sound was a
        breath, or its first words were hidden in the bot's echo) has ended with the reply
        still playing: if the whole turn holds words after all, the user did take the turn.
        Without this the turn was committed, never answered, and the reply played on."""
        if task.cancelled() or task.exception() is not None or self._pending is not None:
            return
        if not self._host.reply_in_progress():
            return
        words = meaningful_words(bid_text(task.result()))
        if len(words) >= max(self.config.interruption.min_words, 1):
            self._host.interrupt_reply()

    # ---- interruptions --------------------------------------------------------------------

    def _ask_for_words(self, pending: PendingInterruption) -> None:
        """Long enough to be a turn: does what was said so far hold real words?"""
        self._asked_words = True
        job = self._transcriber.peek(
            self._without_echo(self._segmenter.audio(), self._audio_end_ms)
        )

        def judge(task: asyncio.Task[Transcript]) -> None:
            if pending is self._pending and not task.cancelled() and task.exception() is None:
                heard = task.result()
                log.debug("barge-in so far: %r (avg_logprob %.2f)", heard.text, heard.avg_logprob)
                self._settle(pending.on_transcript(bid_text(heard), still_speaking=True))

        job.add_done_callback(judge)

    def _begin_interruption(self, onset_at: float, *, voiced_base: int) -> None:
        self._pending = PendingInterruption(self.config.interruption, onset_at)
        log.debug("speech over the reply: paused")
        self._asked_words = False
        self._voiced_base = voiced_base
        self._host.pause_reply(onset_at)

    def _settle(self, verdict: Verdict) -> None:
        if verdict is Verdict.UNDECIDED or self._pending is None:
            return
        self._pending = None
        log.debug("interruption %s", verdict.value)
        if verdict is Verdict.CONFIRMED:
            self._host.interrupt_reply()
        else:
            self._false_this_turn = True
            self._host.resume_reply()


def _words_of(transcript: Transcript) -> str:
    """The transcript's text, or nothing when Whisper was putting words to noise."""
    return transcript.text if transcript.has_words else ""
