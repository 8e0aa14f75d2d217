"""The user's words right after a barge-in over an echoing client are heard, not gated.

A client with no echo canceller plays the call's first reply back into its microphone
(a delayed copy, 200-250 ms later at -9 dB); its user says "Wait, stop. What time is
it?" at the bot's own level 300 ms into that echo. The turn pauses the reply at once, so
the echo stops a moment later, but for ~1.6 s the guard still judges each frame against
the loudest echo anywhere in its whole range (a path that moved could still bring some).
Gated on that alone, "What time is it?" reached the segmenter as silence: the turn ended
at "Wait, stop." and the question was never answered (tests/test_echo_auto_e2e.py at
`auto`, over real WebRTC). Closed loop like TurnTaking: real Piper, Silero, the
segmenter ending a turn after 350 ms of silence (semantic_vad waits 250 ms after a
complete "Wait, stop."; the utterance's own pauses are under 250 ms), and Whisper on the
turns: "stop" and "time" must be in one turn.
"""

from __future__ import annotations

import numpy as np
import pytest

from media.echo.presence import Presence
from media.resample import Resampler
from media.segmenter import SpeechSegmenter, SpeechStarted, SpeechStopped, TurnDetection
from media.vad import SileroModel, SileroVad
from server.engines.faster_whisper_stt import FasterWhisperSTT
from server.turns.echo_listening import EchoListener
from server.turns.options import EchoGuardMode
from tests.echo_path import listen_into
from tests.speech import speak

pytestmark = pytest.mark.slow

RATE = 16000
REPLY = (
    "Once upon a time, in a land of tall mountains and deep green valleys, there lived "
    "a brave dragon named Ember who guarded a small village from every danger."
)
REPLY_AT = 1.0  # s: the track sends silence before the reply
ECHO_DB = -9.0


def barge_in_call(mode: EchoGuardMode, delay_ms: float) -> tuple[list[np.ndarray], EchoListener]:
    """The first reply echoed `delay_ms` later; the user's interruption 300 ms into the
    echo; the reply paused (silence sent) from the frame a turn starts over it. Returns
    the turns' audio, and the listener."""
    reply = speak(REPLY, 48000)
    user = speak("Wait, stop. What time is it?", RATE).astype(np.float64)
    user_at = int((REPLY_AT + delay_ms / 1000 + 0.3) * RATE)
    n_frames = int((REPLY_AT + delay_ms / 1000 + 0.3 + 4.0) / 0.032)
    noise = np.random.default_rng(0).standard_normal(n_frames * 512) * 30.0
    listener = EchoListener(mode)
    vad = SileroVad(SileroModel.load())
    segmenter = SpeechSegmenter(TurnDetection(silence_duration_ms=350))
    resampler = Resampler(RATE)
    sent: list[np.ndarray] = []  # 16 kHz, as the client played it
    paused = False
    turns: list[np.ndarray] = []
    lag = int(delay_ms * RATE / 1000)
    for k in range(n_frames):
        now = (k + 1) * 0.032
        while len(sent) * 0.02 <= now:
            i = int((len(sent) * 0.02 - REPLY_AT) * 48000)
            frame48 = np.zeros(960, np.int16)
            if not paused and 0 <= i < len(reply):
                part = reply[i : i + 960]
                frame48[: len(part)] = part
            listener.far_end(frame48, len(sent) * 0.02)
            sent.append(resampler.pcm(frame48, 48000).astype(np.float64))
        played = np.concatenate(sent)
        at = np.arange(k * 512, (k + 1) * 512) - lag
        mic = np.where(at >= 0, played[np.clip(at, 0, None)], 0.0) * 10 ** (ECHO_DB / 20)
        mic += noise[k * 512 : (k + 1) * 512]
        voice = np.arange(k * 512, (k + 1) * 512) - user_at
        inside = (voice >= 0) & (voice < len(user))
        mic[inside] += user[voice[inside]]
        pcm = np.clip(np.rint(mic), -32768, 32767).astype(np.int16)
        end_ms = (k + 1) * 32
        for event in listen_into(listener, segmenter, vad, pcm, end_ms, now):
            if isinstance(event, SpeechStarted) and now < REPLY_AT + len(reply) / 48000:
                paused = True  # the host pauses the reply at once
            elif isinstance(event, SpeechStopped):
                turns.append(event.audio)
    return turns, listener


@pytest.fixture(scope="module")
async def stt() -> FasterWhisperSTT:
    engine = FasterWhisperSTT(beam_size=5, cpu_threads=2)
    await engine.load()
    return engine


@pytest.mark.parametrize(("mode", "delay_ms"), [("auto", 200.0), ("auto", 250.0), ("on", 200.0)])
async def test_the_question_after_wait_stop_is_in_the_barge_in_turn(stt, mode, delay_ms):
    turns, listener = barge_in_call(mode, delay_ms)
    assert listener.guard.presence.state is Presence.ECHO  # the echo was found: gated
    assert turns, "the interruption never started a turn"
    heard = [(await stt.transcribe(turn)).lower() for turn in turns]
    assert any("stop" in text and "time" in text for text in heard), heard
