"""TurnTaking decisions, frame by frame, with scripted VAD scores and a fake STT.

The probabilities and transcripts are scripted so each decision (pause, confirm, resume,
end the turn early or not) is exact; the real Silero and Whisper path is covered by the
end-to-end tests.
"""

from __future__ import annotations

import asyncio
import logging

import numpy as np
import pytest

from media.echo.held import HeldAudio
from media.echo.refit import EchoRefit
from server.engines.base import Transcript
from server.turns.options import InterruptionOptions, TurnDetectionConfig
from server.turns.transcriber import PAUSE_TAIL_S
from server.turns.turn_taking import TurnTaking

FRAME = np.zeros(512, dtype=np.int16)


class FakeVad:
    """Returns the next scripted probability for each frame."""

    def __init__(self) -> None:
        self.next = 0.0

    def __call__(self, frame: np.ndarray) -> float:
        return self.next


class FakeSTT:
    """Answers `text` (a callable of the audio length) after `delay` seconds; counts calls."""

    name = "fake"

    def __init__(self, text: str = "", delay: float = 0.0) -> None:
        self.text = text
        self.delay = delay
        self.no_speech_prob = 0.05
        self.logprob = -0.3
        self.calls: list[int] = []
        self.heard: list[np.ndarray] = []  # the audio of each call

    async def load(self) -> None:
        pass

    async def transcribe(self, audio: np.ndarray) -> str:
        return (await self.transcribe_detailed(audio)).text

    async def transcribe_detailed(
        self, audio: np.ndarray, language: str | None = None
    ) -> Transcript:
        self.calls.append(len(audio))
        self.heard.append(audio)
        await asyncio.sleep(self.delay)
        return Transcript(self.text, self.no_speech_prob, self.logprob, len(audio) / 16000)


class FakeHost:
    def __init__(self, replying: bool = False) -> None:
        self.replying = replying
        self.log: list[str] = []
        self.turns: list[tuple[asyncio.Task[str], object]] = []
        self.stopped: list[object] = []
        self.noise_over_reply: list[bool] = []
        self.speculations: list[str] = []  # replies begun at a pause ("<dropped>": undone)
        self.partials: list[str] = []  # the turn's words at each pause
        self.said = ""  # the bot's latest replies

    def on_speech_started(self, audio_start_ms: int) -> None:
        self.log.append("started")

    def on_turn_ended(self, stopped, transcript, timings, noise_over_reply=False) -> None:
        self.log.append("ended")
        self.stopped.append(stopped)
        self.turns.append((transcript, timings))
        self.noise_over_reply.append(noise_over_reply)

    def reply_in_progress(self) -> bool:
        return self.replying

    def said_recently(self) -> str:
        return self.said

    def partial_transcript(self, transcript: str) -> None:
        self.partials.append(transcript)

    def speculate(self, transcript: str) -> None:
        self.speculations.append(transcript)

    def drop_speculation(self) -> None:
        if self.speculations and self.speculations[-1] != "<dropped>":
            self.speculations.append("<dropped>")

    def pause_reply(self, onset_at: float) -> None:
        self.log.append("pause")

    def resume_reply(self) -> None:
        self.log.append("resume")

    def interrupt_reply(self) -> None:
        self.log.append("interrupt")
        self.replying = False


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


class Rig:
    """Feeds 32 ms frames with a chosen probability, advancing a fake clock."""

    def __init__(self, config: TurnDetectionConfig, stt: FakeSTT, host: FakeHost) -> None:
        self.vad, self.clock, self.host, self.stt = FakeVad(), Clock(), host, stt
        self.turns = TurnTaking(self.vad, stt, config, host, clock=self.clock)  # type: ignore[arg-type]
        self.ms = 0

    async def feed(self, probability: float, ms: int) -> None:
        for _ in range(ms // 32):
            self.vad.next = probability
            self.ms += 32
            self.clock.t += 0.032
            self.turns.push(FRAME, self.ms)
            await asyncio.sleep(0)  # let finished STT jobs call back, as the loop would

    async def settle(self) -> None:
        for _ in range(5):
            await asyncio.sleep(0.01)


def server_vad(**interruption: int) -> TurnDetectionConfig:
    return TurnDetectionConfig(
        prefix_padding_ms=0, interruption=InterruptionOptions(**interruption)
    )


def semantic(eagerness: str = "auto") -> TurnDetectionConfig:
    return TurnDetectionConfig(type="semantic_vad", eagerness=eagerness, prefix_padding_ms=0)  # type: ignore[arg-type]


async def test_the_echo_listener_judges_an_unjudged_hold_by_the_calls_stt_and_replies(
    caplog: pytest.LogCaptureFixture,
):
    """At `auto`, the listener's last resort on a held voice (`OwnWords`) transcribes it
    with the call's STT and compares the words with what the host says it said; what
    was said stays out of the server's log (HARK_LOG_TRANSCRIPTS)."""
    caplog.set_level(logging.INFO)
    host, stt = FakeHost(), FakeSTT(text="Once upon a time")
    host.said = "Once upon a time, a dragon lived."
    turns = TurnTaking(FakeVad(), stt, server_vad(), host, echo="auto")  # type: ignore[arg-type]
    assert turns.echo is not None and turns.echo.own_words is not None
    held = np.zeros(16000, np.int16)
    assert await turns.echo.own_words.are_own(held)  # the reply's own words: its echo
    stt.text = "Wait, what about tomorrow?"
    assert not await turns.echo.own_words.are_own(held)  # a person's
    assert stt.calls == [16000, 16000]
    assert "judged by its words" in caplog.text
    assert "tomorrow" not in caplog.text.lower() and "dragon" not in caplog.text.lower()


def fake_fit(frames, *, taps: int = 1, chunk: int = 16) -> HeldAudio:
    """Stands in for `EchoGuard.explain_held` (no reference is sent here): every frame
    "less the echo" is all 7s."""
    n = len(frames)
    return HeldAudio([1.0] * n, [np.full(512, 7, np.int16)] * n, [0] * n)


async def test_the_transcript_hears_the_turn_with_the_echo_fitted_out():
    """With an echo listener, what Whisper gets at a pause, and the turn the host keeps,
    are the turn's audio with the refitted frames in place (media.echo.refit): the last
    voiced frames too, fitted at the turn's first unvoiced frame, before its pause."""
    host, stt = FakeHost(), FakeSTT(text="What time is it?")
    # The fits run on a worker thread and later frames wait for them: the VAD scores a
    # frame by its content (1s voiced, 0s silent), not by when it is called.
    turns = TurnTaking(
        lambda frame: 0.9 if frame.any() else 0.0, stt, server_vad(), host, echo="on"
    )  # type: ignore[arg-type]
    assert turns.echo is not None
    refit = EchoRefit(fake_fit)
    add = refit.add
    refit.add = lambda raw, end_ms, echo_window: add(raw, end_ms, echo_window=True)  # type: ignore[method-assign]
    turns.echo.refit = refit  # every frame as if the bot's echo could be in it
    voiced, silent = np.ones(512, np.int16), np.zeros(512, np.int16)
    frames = [voiced] * 20 + [silent] * 47  # one whole chunk, 4 more, then 1.5 s
    for k, frame in enumerate(frames, start=1):
        turns.push(frame, 32 * k)
        await asyncio.sleep(0.002)
    for _ in range(50):
        if host.log == ["started", "ended"] and stt.heard:
            break
        await asyncio.sleep(0.02)
    assert host.log == ["started", "ended"]
    paused = stt.heard[0][: -int(PAUSE_TAIL_S * 16000)]  # the job started at the pause
    assert len(paused) >= 20 * 512 and np.all(paused == 7)
    stopped = host.stopped[0].audio  # type: ignore[attr-defined]
    assert np.all(stopped[: 20 * 512] == 7)


async def test_a_cough_during_a_reply_pauses_it_then_resumes_it():
    rig = Rig(server_vad(), FakeSTT(text=""), FakeHost(replying=True))
    await rig.feed(0.0, 320)
    await rig.feed(0.9, 192)  # under min_duration_ms
    assert rig.host.log == ["started", "pause"]
    await rig.feed(0.0, 320)  # the pause transcript (empty) arrives: false interruption
    await rig.settle()
    assert rig.host.log == ["started", "pause", "resume"]
    await rig.feed(0.0, 640)
    assert "interrupt" not in rig.host.log and rig.host.log.count("ended") == 1


async def test_long_speech_over_a_reply_confirms_the_interruption_by_duration():
    rig = Rig(server_vad(min_duration_ms=500), FakeSTT(text=""), FakeHost(replying=True))
    await rig.feed(0.9, 448)
    assert rig.host.log == ["started", "pause"]
    await rig.feed(0.9, 544)  # past the minimum, but no words heard yet
    assert rig.host.log == ["started", "pause"]
    await rig.feed(0.9, 96)  # twice the minimum: taking the turn whatever the words
    assert rig.host.log == ["started", "pause", "interrupt"]


async def test_words_at_the_minimum_duration_confirm_before_the_speech_ends():
    stt = FakeSTT(text="Wait, tell me about dogs")
    rig = Rig(server_vad(min_duration_ms=500), stt, FakeHost(replying=True))
    await rig.feed(0.9, 544)
    await rig.settle()
    assert rig.host.log == ["started", "pause", "interrupt"]
    assert len(stt.calls) == 1  # the transcript of the speech so far, asked at 500 ms


async def test_a_long_hum_over_a_reply_is_not_an_interruption():
    rig = Rig(server_vad(min_duration_ms=500), FakeSTT(text="Mm-hmm."), FakeHost(replying=True))
    await rig.feed(0.9, 800)  # long enough to ask, but only a backchannel
    await rig.feed(0.0, 320)
    await rig.settle()
    assert rig.host.log == ["started", "pause", "resume"]


async def test_a_short_word_confirms_the_interruption_by_its_transcript():
    rig = Rig(server_vad(min_duration_ms=2000), FakeSTT(text="Stop."), FakeHost(replying=True))
    await rig.feed(0.9, 256)
    await rig.feed(0.0, 256)
    await rig.settle()
    assert rig.host.log == ["started", "pause", "interrupt"]


async def test_a_backchannel_is_a_false_interruption():
    rig = Rig(server_vad(), FakeSTT(text="Uh-huh."), FakeHost(replying=True))
    await rig.feed(0.9, 256)
    await rig.feed(0.0, 256)
    await rig.settle()
    assert rig.host.log == ["started", "pause", "resume"]


async def test_words_whisper_puts_to_noise_do_not_confirm_an_interruption():
    stt = FakeSTT(text="Okay.")
    stt.no_speech_prob, stt.logprob = 0.8, -1.5  # what tiny.en gives for a cough
    rig = Rig(server_vad(), stt, FakeHost(replying=True))
    await rig.feed(0.9, 256)
    await rig.feed(0.0, 256)
    await rig.settle()
    assert rig.host.log == ["started", "pause", "resume"]


async def test_unsure_words_do_not_confirm_an_interruption():
    """tiny.en heard a 0.4 s "mm-hmm" as "in a month", unsure of it (avg_logprob -1.13):
    real words, but not a bid for the turn."""
    stt = FakeSTT(text="in a month")
    stt.no_speech_prob, stt.logprob = 0.31, -1.13
    rig = Rig(server_vad(), stt, FakeHost(replying=True))
    await rig.feed(0.9, 384)
    await rig.feed(0.0, 320)  # the pause transcript is unsure: still paused, no verdict
    await rig.settle()
    assert rig.host.log == ["started", "pause"]
    await rig.feed(0.0, 320)  # the turn's end: the same words decide, and the reply resumes
    await rig.settle()
    assert rig.host.log == ["started", "pause", "ended", "resume"]


async def test_unsure_words_at_a_pause_keep_the_reply_paused_for_the_rest_of_the_bid():
    """Over a client's echo the first words of "Ah, tell me about dogs" came out unsure;
    resuming at that pause let the echo hide the rest. Paused, the rest is heard."""
    stt = FakeSTT(text="ah, tell me")
    stt.no_speech_prob, stt.logprob = 0.23, -1.01
    rig = Rig(server_vad(min_duration_ms=2000), stt, FakeHost(replying=True))
    await rig.feed(0.9, 384)
    await rig.feed(0.0, 224)  # a pause: the transcript so far is unsure
    await rig.settle()
    stt.text, stt.logprob = "Ah, tell me about dogs instead.", -0.4
    await rig.feed(0.9, 640)
    await rig.feed(0.0, 640)
    await rig.settle()
    assert rig.host.log[:3] == ["started", "pause", "interrupt"]
    assert "resume" not in rig.host.log


async def test_a_phrase_heard_unsure_over_the_echo_still_confirms():
    stt = FakeSTT(text="What are you about,")
    stt.no_speech_prob, stt.logprob = 0.3, -1.2
    rig = Rig(server_vad(), stt, FakeHost(replying=True))
    await rig.feed(0.9, 384)
    await rig.feed(0.0, 640)
    await rig.settle()
    assert rig.host.log[:3] == ["started", "pause", "interrupt"]


async def test_no_evidence_within_the_timeout_resumes_even_if_stt_is_slow():
    host = FakeHost(replying=True)
    rig = Rig(server_vad(false_interruption_timeout_ms=600), FakeSTT("Stop.", delay=5), host)
    await rig.feed(0.9, 192)
    await rig.feed(0.0, 640)
    assert host.log[:3] == ["started", "pause", "resume"] and "interrupt" not in host.log


async def test_speaking_again_after_a_false_interruption_pauses_again():
    rig = Rig(server_vad(), FakeSTT(text=""), FakeHost(replying=True))
    await rig.feed(0.9, 192)
    await rig.feed(0.0, 288)  # wordless, and quiet for interruption.NOISE_SILENCE_MS: noise
    await rig.settle()
    assert rig.host.log[-1] == "resume"
    await rig.feed(0.9, 2080)  # same turn (silence < 500 ms), twice the minimum now
    assert rig.host.log == ["started", "pause", "resume", "pause", "interrupt"]


async def test_a_short_gap_after_wordless_speech_does_not_resume_the_reply():
    """ "Wait, stop, ...": the pause after "Wait," is transcribed before Whisper can hear a
    word in it; the reply stays paused until the silence has lasted NOISE_SILENCE_MS."""
    rig = Rig(server_vad(), FakeSTT(text=""), FakeHost(replying=True))
    await rig.feed(0.9, 192)
    await rig.feed(0.0, 128)
    await rig.settle()
    assert rig.host.log == ["started", "pause"]
    rig.stt.text = "Wait, stop, tell me about dogs."
    await rig.feed(0.9, 1024)
    await rig.settle()
    assert rig.host.log == ["started", "pause", "interrupt"]


async def test_no_reply_means_no_pause():
    rig = Rig(server_vad(), FakeSTT(text="hello there."), FakeHost(replying=False))
    await rig.feed(0.9, 800)
    await rig.feed(0.0, 800)
    await rig.settle()
    assert rig.host.log == ["started", "ended"]


async def test_interrupt_response_false_never_pauses():
    config = TurnDetectionConfig(prefix_padding_ms=0, interrupt_response=False)
    rig = Rig(config, FakeSTT(text="stop"), FakeHost(replying=True))
    await rig.feed(0.9, 800)
    assert rig.host.log == ["started"]


async def test_preemptive_transcript_is_reused_when_the_user_stays_quiet():
    stt = FakeSTT(text="What is the time?")
    rig = Rig(server_vad(), stt, FakeHost())
    await rig.feed(0.9, 960)
    await rig.feed(0.0, 640)
    await rig.settle()
    assert rig.host.log == ["started", "ended"]
    assert len(stt.calls) == 1  # only the pause's job: the turn end reused it
    transcript, timings = rig.host.turns[0]
    assert (await transcript).text == "What is the time?"
    assert timings.stt_preemptive  # type: ignore[attr-defined]


async def test_speech_after_the_pause_transcribes_the_whole_turn_again():
    stt = FakeSTT(text="x", delay=0.001)
    rig = Rig(server_vad(), stt, FakeHost())
    await rig.feed(0.9, 640)
    await rig.feed(0.0, 224)  # a pause: job 1
    await rig.feed(0.9, 640)  # resumed: job 1 no longer covers the turn
    await rig.feed(0.0, 640)  # pause: job 2, then the turn ends
    await rig.settle()
    assert len(stt.calls) == 2 and stt.calls[1] > stt.calls[0]
    assert rig.host.log == ["started", "ended"]


async def test_semantic_vad_answers_a_finished_question_after_a_short_pause():
    rig = Rig(semantic(), FakeSTT(text="What is the capital of France?"), FakeHost())
    await rig.feed(0.9, 960)
    await rig.feed(0.0, 192)  # pause (160 ms) → transcript → "complete": 250 ms wait
    await rig.settle()
    await rig.feed(0.0, 96)
    assert rig.host.log == ["started", "ended"]
    _, timings = rig.host.turns[0]
    # The turn ended after ~256-288 ms of silence, far below server_vad's 500 ms.
    stopped_silence = timings.speech_stopped - timings.speech_end  # type: ignore[attr-defined]
    assert 0.2 <= stopped_silence <= 0.35


async def test_semantic_vad_waits_through_a_pause_after_unfinished_words():
    rig = Rig(semantic(), FakeSTT(text="What is the capital of"), FakeHost())
    await rig.feed(0.9, 960)
    await rig.feed(0.0, 192)
    await rig.settle()
    await rig.feed(0.0, 704)  # 900 ms of pause in all: server_vad would have ended it
    assert rig.host.log == ["started"]
    await rig.feed(0.9, 480)  # the user goes on
    rig.stt.text = "What is the capital of France?"
    await rig.feed(0.0, 192)
    await rig.settle()
    await rig.feed(0.0, 96)
    assert rig.host.log == ["started", "ended"]


async def test_semantic_vad_ends_an_unfinished_turn_at_its_longest_wait():
    rig = Rig(semantic("high"), FakeSTT(text="I was thinking about the"), FakeHost())
    await rig.feed(0.9, 640)
    await rig.feed(0.0, 1100)
    assert rig.host.log == ["started"]
    await rig.feed(0.0, 224)  # past high eagerness's 1200 ms limit
    assert rig.host.log == ["started", "ended"]


async def test_a_turn_judged_false_early_that_ends_with_words_interrupts_the_reply():
    """The first sound was judged a false interruption (its pause transcript had no words)
    and the reply resumed; the user went on talking, unheard as a new onset (as when the
    bot's echo hides it), and the whole turn's transcript holds words: the reply stops,
    so the turn can be answered instead of ignored."""
    stt = FakeSTT(text="")
    rig = Rig(server_vad(min_duration_ms=5000), stt, FakeHost(replying=True))
    await rig.feed(0.9, 192)
    await rig.feed(0.0, 288)  # a pause: its transcript is empty, a false interruption
    await rig.settle()
    assert rig.host.log == ["started", "pause", "resume"]
    stt.text = "Stop. Tell me about dogs instead."
    await rig.feed(0.0, 256)  # the turn ends: the whole of it is transcribed again
    await rig.settle()
    assert rig.host.log == ["started", "pause", "resume", "ended", "interrupt"]


async def test_a_backchannel_turn_is_not_judged_twice():
    """A turn that was only "uh-huh" resumes the reply once; its end does not stop it."""
    rig = Rig(server_vad(), FakeSTT(text="Uh-huh."), FakeHost(replying=True))
    await rig.feed(0.9, 256)
    await rig.feed(0.0, 640)
    await rig.settle()
    assert rig.host.log == ["started", "pause", "resume", "ended"]
    assert rig.host.replying
    assert rig.host.noise_over_reply == [True]  # answered only if it proves a bid


async def test_a_finished_pause_begins_the_reply_before_the_turn_ends():
    rig = Rig(semantic(), FakeSTT(text="What is the capital of France?"), FakeHost())
    await rig.feed(0.9, 960)
    await rig.feed(0.0, 192)  # pause → transcript: the reply starts, held
    await rig.settle()
    assert rig.host.speculations == ["What is the capital of France?"]
    assert rig.host.log == ["started"]  # the turn itself has not ended yet
    await rig.feed(0.0, 96)
    assert rig.host.log == ["started", "ended"]
    assert rig.host.speculations == ["What is the capital of France?"]  # kept: released


async def test_speaking_again_drops_the_reply_begun_at_the_pause():
    rig = Rig(server_vad(), FakeSTT(text="Tell me about Paris."), FakeHost())
    await rig.feed(0.9, 640)
    await rig.feed(0.0, 224)
    await rig.settle()
    assert rig.host.speculations == ["Tell me about Paris."]
    await rig.feed(0.9, 320)  # the user goes on: that was not the end of the turn
    assert rig.host.speculations == ["Tell me about Paris.", "<dropped>"]
    await rig.feed(0.0, 640)
    await rig.settle()
    assert rig.host.speculations[-1] == "Tell me about Paris."  # the new pause's guess


async def test_unfinished_words_or_noise_begin_no_reply():
    rig = Rig(semantic(), FakeSTT(text="What is the capital of"), FakeHost())
    await rig.feed(0.9, 640)
    await rig.feed(0.0, 224)
    await rig.settle()
    assert rig.host.speculations == []
    stt = FakeSTT(text="Okay.")
    stt.no_speech_prob, stt.logprob = 0.8, -1.5  # Whisper's words for a cough
    cough = Rig(server_vad(), stt, FakeHost())
    await cough.feed(0.9, 320)
    await cough.feed(0.0, 224)
    await cough.settle()
    assert cough.host.speculations == []


async def test_every_pause_with_words_reports_the_turn_so_far():
    # Unfinished words begin no reply but are still the turn's words so far (transcription
    # sessions stream them as deltas); noise reports nothing.
    rig = Rig(semantic(), FakeSTT(text="What is the capital of"), FakeHost())
    await rig.feed(0.9, 640)
    await rig.feed(0.0, 224)
    await rig.settle()
    assert rig.host.partials == ["What is the capital of"] and rig.host.speculations == []
    stt = FakeSTT(text="Okay.")
    stt.no_speech_prob, stt.logprob = 0.8, -1.5
    cough = Rig(server_vad(), stt, FakeHost())
    await cough.feed(0.9, 320)
    await cough.feed(0.0, 224)
    await cough.settle()
    assert cough.host.partials == []


async def test_speech_over_a_reply_begins_no_second_reply():
    rig = Rig(server_vad(), FakeSTT(text="Mm-hmm."), FakeHost(replying=True))
    await rig.feed(0.9, 320)
    await rig.feed(0.0, 320)
    await rig.settle()
    assert rig.host.log == ["started", "pause", "resume"]
    assert rig.host.speculations == []
