"""Does the client send the bot's voice back? `EchoPresence` through the simulated client
(tests/echo_path.py: real Piper replies, real Silero, the real segmenter), and the
`EchoListener` that replays a voice the gate held back once the echo is ruled out."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from media.echo.guard import EchoGuard
from media.echo.presence import Presence
from media.segmenter import SpeechSegmenter, SpeechStarted, TurnDetection
from media.vad import SileroModel, SileroVad
from server.turns.echo_listening import EchoListener
from tests.echo_path import MIC_T0, REPLY_AT, echo_cases, run_case
from tests.speech import speak

pytestmark = pytest.mark.slow


class WatchedGuard(EchoGuard):
    """An EchoGuard that notes the microphone clock at which its presence settled."""

    def __init__(self) -> None:
        super().__init__()
        self.settled_ms: int | None = None

    def near_end(self, frame, audio_end_ms, now=None):  # type: ignore[no-untyped-def]
        verdict = super().near_end(frame, audio_end_ms, now)
        if self.settled_ms is None and self.presence.state is not Presence.UNKNOWN:
            self.settled_ms = audio_end_ms
        return verdict


class ListeningGuard:
    """`run_case`'s guard seen through an `EchoListener` (its own VAD: the listener's
    verdict is what the segmenter would get); any replay would be a phantom turn."""

    def __init__(self) -> None:
        self.listener = EchoListener("auto")
        self.guard = self.listener.guard
        self.vad = SileroVad(SileroModel.load())
        self.replays = 0
        self.delay_ms = None
        self.last = (0, 0.0)  # (audio_end_ms, arrival) of the last microphone frame

    def far_end(self, frame, sent_at):  # type: ignore[no-untyped-def]
        self.guard.far_end(frame, sent_at)

    def near_end(self, frame, audio_end_ms, now=None):  # type: ignore[no-untyped-def]
        heard = self.listener.hear(frame, audio_end_ms, self.vad, 0.5, in_turn=False, now=now)
        self.last = (audio_end_ms, now)
        self.replays += bool(heard.replay)
        return type("Verdict", (), {"frame": heard.frame, "echo_only": heard.probability == 0})


@pytest.mark.parametrize("room", [False, True])
def test_an_echoing_client_is_never_taken_for_a_voice(room):
    """At the defaults, through the listener: the echo is found, nothing replayed."""
    for case in echo_cases(4, user=False, seed=7):
        shim = ListeningGuard()
        result = run_case(replace(case, room=room), shim)  # type: ignore[arg-type]
        assert shim.guard.presence.state is Presence.ECHO, case
        assert shim.replays == 0 and result.started_ms == [], case


@pytest.mark.parametrize("room", [False, True])
def test_an_echo_is_found_before_it_could_start_a_turn(room):
    for case in echo_cases(3, user=False, seed=5):
        guard = WatchedGuard()
        result = run_case(replace(case, room=room), guard)
        assert guard.presence.state is Presence.ECHO, case
        assert guard.settled_ms is not None
        assert guard.settled_ms - result.reply_echo_ms < 600  # within the first reply
        assert result.started_ms == []  # and no phantom turn meanwhile


def test_a_client_without_echo_is_ruled_out_during_its_first_reply():
    for case in echo_cases(3, user=False, seed=5):
        guard = WatchedGuard()
        result = run_case(case, guard, with_echo=False)
        assert guard.presence.state is Presence.NONE, case
        assert guard.settled_ms is not None
        reply_ms = round((REPLY_AT - MIC_T0) * 1000)
        assert guard.settled_ms - reply_ms < 3000
        assert result.started_ms == []


def test_a_call_settled_echo_free_runs_no_canceller_until_an_echo_is_found():
    """At `auto`, once a client is known to send no echo nothing the canceller makes is
    used: AEC3 (a third of the guard's CPU) stops. An echo found later (a loudspeaker
    switched on) gates again, with a fresh canceller."""
    shim = ListeningGuard()
    case = echo_cases(1, user=False, seed=5)[0]
    run_case(case, shim, with_echo=False)  # type: ignore[arg-type]
    assert shim.guard.presence.state is Presence.NONE
    assert not shim.listener.gating and not shim.guard.canceller_running
    shim.guard.presence.echo_found()
    end_ms, now = shim.last
    loud = (np.sin(np.arange(960) / 7.0) * 8000).astype(np.int16)
    noise = np.random.default_rng(0).normal(0, 300, 512).astype(np.int16)
    sent_at = now
    for _ in range(10):  # the bot speaks again (the microphone's side is not judged here)
        while sent_at < now + 0.032:
            shim.far_end(loud, sent_at)
            sent_at += 0.02
        now += 0.032
        end_ms += 32
        shim.near_end(noise, end_ms, now=now)
    assert shim.listener.gating and shim.guard.canceller_running
    on = ListeningGuard()  # "on" gates whatever the presence says: it keeps AEC3
    on.listener.mode = "on"
    run_case(case, on, with_echo=False)  # type: ignore[arg-type]
    assert on.guard.presence.state is Presence.NONE and on.guard.canceller_running


def test_a_voice_held_back_as_possible_echo_is_replayed_not_lost():
    """A client with no echo: its user talks 300 ms into the call's first reply, before
    the quiet rule can have ruled the echo out, at a level the gate cannot tell from an
    echo. The listener holds the voice, then hands it back whole once no echo shows in
    it, so the segmenter starts the turn where the voice began."""
    rate = 16000
    reply48 = speak("The weather today is sunny with a light breeze, and warm.", 48000)
    sent48 = np.concatenate([np.zeros(48000, np.int16), reply48, np.zeros(96000, np.int16)])
    sent48 = sent48[: len(sent48) // 960 * 960]
    n_mic = int((len(sent48) / 48000 - MIC_T0) * rate) // 512 * 512
    rng = np.random.default_rng(1)
    mic = rng.standard_normal(n_mic) * 30.0
    user = speak("Wait, stop. What time is it?").astype(np.float64) * 10 ** (-6 / 20)
    at = int((REPLY_AT + 0.3 - MIC_T0) * rate)
    mic[at : at + len(user)] += user[: n_mic - at]
    mic_pcm = np.clip(np.rint(mic), -32768, 32767).astype(np.int16)

    listener = EchoListener("auto")
    vad = SileroVad(SileroModel.load())
    segmenter = SpeechSegmenter(TurnDetection())
    started: list[int] = []
    replayed = 0
    f = 0
    for k in range(n_mic // 512):
        now = MIC_T0 + (k + 1) * 0.032
        while f * 0.02 <= now and f < len(sent48) // 960:
            listener.guard.far_end(sent48[f * 960 : (f + 1) * 960], f * 0.02)
            f += 1
        end_ms = (k + 1) * 32
        frame = mic_pcm[k * 512 : (k + 1) * 512]
        heard = listener.hear(frame, end_ms, vad, 0.5, in_turn=segmenter.speaking, now=now)
        pushed = [(h.raw, h.probability, h.audio_end_ms) for h in heard.replay]
        if heard.replay:
            replayed += 1
            segmenter.reset()
        for item in [*pushed, (heard.frame, heard.probability, end_ms)]:
            for event in segmenter.push(*item):
                if isinstance(event, SpeechStarted):
                    started.append(event.audio_start_ms)
    onset_ms = at * 1000 // rate
    assert listener.guard.presence.state is not Presence.ECHO
    assert replayed, "the voice was never held back: nothing was tested"
    assert started, "the user's voice never started a turn"
    assert abs(started[0] - onset_ms) < 400  # the turn begins where the voice did
