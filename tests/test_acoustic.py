"""The acoustic test client's own mechanics: send times, echo mixing, reply timing, verdicts.

Driven frame by frame without a peer connection, so every number is exact; the tracks
themselves are what the benchmark hands to aiortc.
"""

from __future__ import annotations

import time

import numpy as np

from tests.acoustic import (
    AUDIBLE_RMS,
    FRAME,
    RATE,
    EchoingMicrophone,
    ReplyRecorder,
    ScriptedMicrophone,
    frame_rms,
    noises,
    voiced_span,
)
from tests.bench.peers.hark import find_number
from tests.bench.peers.pipecat import signals_from_log


def tone(ms: int, level: float = 8000.0) -> np.ndarray:
    n = ms * RATE // 1000
    return (np.sin(np.arange(n) * 2 * np.pi * 440 / RATE) * level).astype(np.int16)


async def pull(track: ScriptedMicrophone, frames: int) -> list[tuple[float, np.ndarray]]:
    out = []
    for _ in range(frames):
        frame = await track.recv()
        out.append((time.monotonic(), frame.to_ndarray().reshape(-1)))
    return out


async def test_microphone_stamps_the_voiced_frames_it_sends() -> None:
    mic = ScriptedMicrophone()
    pcm = np.concatenate(
        [np.zeros(3 * FRAME, dtype=np.int16), tone(100), np.zeros(FRAME, np.int16)]
    )
    said = mic.say(pcm, "word")
    sent = await pull(mic, 12)
    levels = [frame_rms(frame) for _, frame in sent]
    voiced = [i for i, level in enumerate(levels) if level >= AUDIBLE_RMS]
    assert voiced == [3, 4, 5, 6, 7]  # 3 silent frames, 100 ms of tone, then silence
    assert said.done.is_set() and not mic.busy
    assert said.onset is not None and said.end is not None
    assert abs(said.onset - sent[3][0]) < 0.005
    assert abs(said.end - (sent[7][0] + 0.02)) < 0.005
    assert np.array_equal(np.concatenate([f for _, f in sent[:9]]), pcm)


async def test_microphone_plays_queued_sounds_back_to_back() -> None:
    mic = ScriptedMicrophone()
    first, second = mic.say(tone(40), "a"), mic.say(tone(40, 2000), "b")
    await pull(mic, 5)
    assert first.onset is not None and second.onset is not None
    assert abs((second.onset - first.onset) - 0.04) < 0.01


async def test_echoing_microphone_returns_what_it_heard_later_and_quieter() -> None:
    mic = EchoingMicrophone(delay_ms=100, gain_db=-6)
    heard = tone(20, 10000)
    mic.hear(time.monotonic(), heard)
    early = await pull(mic, 2)  # ~20 ms later: still inside the delay
    assert all(frame_rms(frame) == 0 for _, frame in early)
    late = await pull(mic, 8)
    echoed = [frame for _, frame in late if frame_rms(frame) > 0]
    assert len(echoed) == 1
    gain = frame_rms(echoed[0]) / frame_rms(heard)
    assert 0.45 < gain < 0.55  # -6 dB
    assert mic.echoed_frames == 1


async def test_echoing_microphone_mixes_speech_on_top_of_the_echo() -> None:
    mic = EchoingMicrophone(delay_ms=0, gain_db=-12)
    mic.hear(time.monotonic() - 1, tone(20, 10000))
    mic.say(tone(20, 10000))
    frame = (await pull(mic, 1))[0][1]
    assert frame_rms(frame) > frame_rms(tone(20, 10000)) * 1.2  # both are in it


def recorder(pattern: str, t0: float = 100.0) -> ReplyRecorder:
    """A recording from a pattern: '#' an audible 20 ms chunk, '.' a silent one."""
    ear = ReplyRecorder()
    for i, mark in enumerate(pattern):
        chunk = tone(20) if mark == "#" else np.zeros(FRAME, dtype=np.int16)
        ear.chunks.append(chunk)
        ear.times.append(t0 + i * 0.02)
        ear.levels.append(frame_rms(chunk))
    return ear


def test_recorder_finds_first_audio_and_when_it_went_quiet() -> None:
    ear = recorder("....####..####" + "." * 30 + "##")
    assert abs(ear.first_audible_after(100.0) - 100.08) < 1e-9
    # a 40 ms pause between words is not the end; the 600 ms silence is
    assert abs(ear.silent_from(100.1, hold_ms=500) - 100.28) < 1e-9
    assert ear.silent_from(100.1, hold_ms=1000) is None
    assert ear.gaps_ms(100.0, 101.0, min_gap_ms=300) == [620.0]
    assert ear.audible_ms_between(100.0, 100.19) == 80.0


def test_noises_are_short_and_audible() -> None:
    for label, pcm in noises():
        span = voiced_span(pcm)
        assert span is not None, label
        assert (span[1] - span[0] + 1) * 20 < 400, label


def test_pipecat_interruptions_count_only_while_a_reply_is_under_way() -> None:
    log = [
        {"t": 1.0, "type": "interruption"},  # the user's first words: nothing to cancel
        {"t": 1.0, "type": "interruption"},
        {"t": 2.0, "type": "transcript", "text": " What is the capital of France? "},
        {"t": 2.1, "type": "llm_response_start"},
        {"t": 3.0, "type": "bot_started_speaking"},
        {"t": 3.5, "type": "bot_stopped_speaking"},  # between sentences
        {"t": 3.8, "type": "bot_started_speaking"},
        {"t": 4.0, "type": "interruption"},  # barge-in: cancels
        {"t": 4.0, "type": "interruption"},
        {"t": 4.05, "type": "bot_stopped_speaking"},
        {"t": 6.0, "type": "llm_response_start"},
        {"t": 6.5, "type": "bot_started_speaking"},
        {"t": 7.0, "type": "bot_stopped_speaking"},
        {"t": 9.0, "type": "interruption"},  # after the reply finished: nothing to cancel
    ]
    signals = signals_from_log(log)
    assert signals.cancels == [(4.0, 2.1)]
    assert signals.reply_cancel(playing_at=3.9) == 4.0
    assert signals.reply_cancel(playing_at=6.6) is None  # the second reply was not cut
    assert signals.responses == [2.1, 6.0]
    assert signals.transcripts == [(2.0, "What is the capital of France?")]
    assert not signals.transcripts_are_turns


def test_hark_metrics_fields_are_found_wherever_they_sit() -> None:
    assert (
        find_number(
            {"type": "hark.metrics", "turn": {"barge_in_stop_ms": 84.5}}, "barge_in_stop_ms"
        )
        == 84.5
    )
    assert (
        find_number({"barge_in_stop_ms": None, "x": [{"barge_in_stop_ms": 3}]}, "barge_in_stop_ms")
        == 3.0
    )
    assert find_number({"type": "hark.metrics", "turn": {}}, "barge_in_stop_ms") is None
