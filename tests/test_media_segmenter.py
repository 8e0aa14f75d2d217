"""Turn segmentation: real Piper speech through the real Silero model, plus exact edge cases."""

import numpy as np
import pytest

from media.segmenter import (
    SpeechPaused,
    SpeechResumed,
    SpeechSegmenter,
    SpeechStarted,
    SpeechStopped,
    TurnDetection,
)
from media.vad import SileroModel, SileroVad
from tests.speech import silence, speak

FIRST = "What is the weather like in Paris?"
SECOND = "Turn on the lights in the kitchen."


def voiced_span_ms(pcm: np.ndarray) -> tuple[int, int]:
    """First and last 10 ms window with voice energy: the ground truth onset and offset."""
    rms = np.sqrt(np.mean(pcm[: len(pcm) // 160 * 160].reshape(-1, 160).astype(float) ** 2, 1))
    loud = np.nonzero(rms > 300)[0]
    return int(loud[0]) * 10, int(loud[-1] + 1) * 10


def run(pcm: np.ndarray, params: TurnDetection | None = None, *, pauses: bool = False) -> list:
    """Feed `pcm` frame by frame, like the session does; return the turn events in order
    (with the pauses and resumptions inside turns too if `pauses`)."""
    detector = SileroVad(SileroModel.load())
    segmenter = SpeechSegmenter(params or TurnDetection())
    events = []
    for n in range(len(pcm) // 512):
        frame = pcm[n * 512 : (n + 1) * 512]
        events += segmenter.push(frame, detector(frame), (n + 1) * 32)
    if pauses:
        return events
    return [e for e in events if isinstance(e, SpeechStarted | SpeechStopped)]


def kinds(events: list) -> list[str]:
    """Turn boundaries only; pauses inside a turn are checked by their own tests."""
    return [type(e).__name__ for e in events if isinstance(e, SpeechStarted | SpeechStopped)]


def boundaries(events: list) -> list:
    return [e for e in events if isinstance(e, SpeechStarted | SpeechStopped)]


def all_kinds(events: list) -> list[str]:
    return [type(e).__name__ for e in events]


def test_one_utterance_gives_one_turn_with_padding_and_trailing_silence():
    utterance = speak(FIRST)
    pcm = np.concatenate([silence(1000), utterance, silence(1000)])
    events = run(pcm)
    assert kinds(events) == ["SpeechStarted", "SpeechStopped"]
    started, stopped = events
    onset_ms, offset_ms = voiced_span_ms(utterance)
    assert abs(started.audio_start_ms - (1000 + onset_ms - 300)) <= 100
    # The stop includes silence_duration_ms of silence after the voice ends.
    assert 1000 + offset_ms + 500 <= stopped.audio_end_ms <= 1000 + offset_ms + 500 + 400
    # The segment is exactly the input between the two positions.
    start, end = started.audio_start_ms * 16, stopped.audio_end_ms * 16
    assert stopped.audio.dtype == np.int16
    np.testing.assert_array_equal(stopped.audio, pcm[start:end])


def test_separate_utterances_give_separate_turns():
    a, b = speak(FIRST), speak(SECOND)
    pcm = np.concatenate([silence(500), a, silence(1200), b, silence(1000)])
    events = run(pcm)
    assert kinds(events) == ["SpeechStarted", "SpeechStopped"] * 2
    assert events[1].audio_end_ms <= events[2].audio_start_ms  # turns never share audio
    b_onset, _ = voiced_span_ms(b)
    assert abs(events[2].audio_start_ms - (500 + len(a) // 16 + 1200 + b_onset - 300)) <= 100


@pytest.mark.parametrize("gap_ms", [200, 300])
def test_pause_shorter_than_silence_duration_does_not_split(gap_ms):
    a, b = speak(FIRST), speak(SECOND)
    pcm = np.concatenate([silence(500), a, silence(gap_ms), b, silence(1000)])
    events = run(pcm)
    assert kinds(events) == ["SpeechStarted", "SpeechStopped"]
    assert len(events[1].audio) > (len(a) + len(b)) * 0.9


def test_same_pause_splits_with_a_shorter_silence_duration():
    a, b = speak(FIRST), speak(SECOND)
    pcm = np.concatenate([silence(500), a, silence(400), b, silence(1000)])
    events = run(pcm, TurnDetection(silence_duration_ms=200))
    assert kinds(events) == ["SpeechStarted", "SpeechStopped"] * 2


def test_silence_alone_gives_nothing():
    assert run(silence(3000)) == []


# Exact behaviour on scripted probabilities (no model).


def feed(segmenter: SpeechSegmenter, probs: list[float], start_frame: int = 0) -> list:
    """Frame n holds the value n everywhere, so the segment's frames can be identified."""
    events = []
    for i, p in enumerate(probs, start=start_frame):
        events += segmenter.push(np.full(512, i, dtype=np.int16), p, (i + 1) * 32)
    return events


def frame_ids(audio: np.ndarray) -> list[int]:
    return [int(v) for v in audio[::512]]


def test_single_spike_does_not_start_two_frames_do():
    seg = SpeechSegmenter(TurnDetection())
    assert feed(seg, [0, 0.9, 0, 0]) == []
    assert not seg.speaking
    events = feed(seg, [0.9, 0.9], start_frame=4)
    assert kinds(events) == ["SpeechStarted"] and seg.speaking


def test_start_position_subtracts_only_the_padding_available():
    seg = SpeechSegmenter(TurnDetection(prefix_padding_ms=300))
    # Onset at frame 20 (640 ms): 300 ms of padding is available.
    (started,) = feed(seg, [0.0] * 20 + [0.9, 0.9])
    assert started.audio_start_ms == 640 - 300
    seg.reset()
    # Onset at frame 3 (96 ms): only 96 ms exist before it.
    (started,) = feed(seg, [0.0] * 3 + [0.9, 0.9])
    assert started.audio_start_ms == 0


def test_segment_holds_padding_onset_speech_and_trailing_silence():
    seg = SpeechSegmenter(TurnDetection(prefix_padding_ms=64, silence_duration_ms=96))
    events = feed(seg, [0.0] * 5 + [0.9] * 4 + [0.0] * 3)
    started, stopped = boundaries(events)
    assert started.audio_start_ms == 5 * 32 - 64
    assert stopped.audio_end_ms == 12 * 32
    assert frame_ids(stopped.audio) == list(range(3, 12))
    assert len(stopped.audio) == (stopped.audio_end_ms - started.audio_start_ms) * 16


def test_hysteresis_keeps_a_turn_alive_between_thresholds():
    seg = SpeechSegmenter(TurnDetection(threshold=0.5, silence_duration_ms=96))
    feed(seg, [0.9, 0.9])
    # 0.4 is under the start threshold but above 0.5 - 0.15: still speech.
    assert feed(seg, [0.4] * 10, start_frame=2) == []
    assert seg.speaking
    events = feed(seg, [0.3] * 3, start_frame=12)
    assert kinds(events) == ["SpeechStopped"]


def test_silence_must_be_continuous():
    seg = SpeechSegmenter(TurnDetection(silence_duration_ms=128))  # 4 frames
    feed(seg, [0.9, 0.9])
    assert kinds(feed(seg, [0.0, 0.0, 0.0, 0.9, 0.0, 0.0, 0.0], start_frame=2)) == []
    assert kinds(feed(seg, [0.0], start_frame=9)) == ["SpeechStopped"]


def test_long_speech_is_cut_at_the_cap():
    seg = SpeechSegmenter(TurnDetection(), max_segment_ms=3200)
    events = feed(seg, [0.9] * 150)
    assert kinds(events) == ["SpeechStarted", "SpeechStopped", "SpeechStarted"]
    assert len(events[1].audio) == 3200 * 16


def test_update_applies_to_the_running_turn_and_reset_forgets_it():
    seg = SpeechSegmenter(TurnDetection(silence_duration_ms=1000))
    feed(seg, [0.9, 0.9])
    assert kinds(feed(seg, [0.0] * 4, start_frame=2)) == []
    seg.update(TurnDetection(silence_duration_ms=160))
    assert kinds(feed(seg, [0.0], start_frame=6)) == ["SpeechStopped"]
    feed(seg, [0.9, 0.9], start_frame=7)
    seg.reset()
    assert not seg.speaking
    assert feed(seg, [0.0] * 40, start_frame=9) == []


def test_zero_padding_and_zero_silence():
    seg = SpeechSegmenter(TurnDetection(prefix_padding_ms=0, silence_duration_ms=0))
    started, stopped = feed(seg, [0.0] * 5 + [0.9, 0.9, 0.9, 0.0])
    assert started.audio_start_ms == 5 * 32
    assert frame_ids(stopped.audio) == [5, 6, 7, 8]


def test_segmenter_copies_frames():
    seg = SpeechSegmenter(TurnDetection(silence_duration_ms=32))
    buffer = np.full(512, 7, dtype=np.int16)
    seg.push(buffer, 0.9, 32)
    seg.push(buffer, 0.9, 64)
    buffer[:] = 0
    (stopped,) = seg.push(buffer, 0.0, 96)
    assert stopped.audio[:1024].min() == 7


@pytest.mark.parametrize(
    "kwargs",
    [
        {"threshold": 1.5},
        {"threshold": -0.1},
        {"threshold": "0.5"},
        {"prefix_padding_ms": -1},
        {"silence_duration_ms": -20},
        {"silence_duration_ms": 12.5},
        {"prefix_padding_ms": True},
    ],
)
def test_turn_detection_rejects_bad_values(kwargs):
    name = next(iter(kwargs))
    with pytest.raises(ValueError, match=name):
        TurnDetection(**kwargs)


def test_turn_detection_accepts_edges_and_defaults_match_openai():
    assert TurnDetection() == TurnDetection(
        threshold=0.5, prefix_padding_ms=300, silence_duration_ms=500
    )
    TurnDetection(threshold=0, prefix_padding_ms=0, silence_duration_ms=0)
    TurnDetection(threshold=1)


def test_events_are_frozen():
    with pytest.raises(AttributeError):
        SpeechStarted(audio_start_ms=1).audio_start_ms = 2  # type: ignore[misc]
    assert isinstance(SpeechStopped(10, np.zeros(0, np.int16)).audio, np.ndarray)


def test_pause_inside_a_turn_is_reported_with_the_audio_so_far_then_resumed():
    seg = SpeechSegmenter(TurnDetection(prefix_padding_ms=0, silence_duration_ms=500), pause_ms=160)
    loud, quiet = np.full(512, 1000, np.int16), np.zeros(512, np.int16)
    script = [(loud, 0.9)] * 5 + [(quiet, 0.0)] * 6 + [(loud, 0.9)] * 3 + [(quiet, 0.0)] * 16
    events = []
    for n, (frame, p) in enumerate(script):
        events += seg.push(frame, p, (n + 1) * 32)
    assert all_kinds(events) == [
        "SpeechStarted",
        "SpeechPaused",
        "SpeechResumed",
        "SpeechPaused",
        "SpeechStopped",
    ]
    first_pause = events[1]
    assert isinstance(first_pause, SpeechPaused)
    # 5 voiced frames then 5 silent ones (160 ms = 5 frames of 32 ms): the pause fires at
    # the fifth silent frame and carries everything so far.
    assert first_pause.audio_end_ms == 10 * 32
    assert len(first_pause.audio) == 10 * 512
    assert isinstance(events[2], SpeechResumed) and events[2].audio_end_ms == 12 * 32
    assert seg.voiced_ms == 0 and not seg.paused  # reset by the stop


def test_end_turn_stops_now_and_only_inside_a_turn():
    seg = SpeechSegmenter(TurnDetection(prefix_padding_ms=0, silence_duration_ms=2000))
    loud, quiet = np.full(512, 1000, np.int16), np.zeros(512, np.int16)
    assert seg.end_turn(0) is None
    for n in range(4):
        seg.push(loud, 0.9, (n + 1) * 32)
    for n in range(4, 10):
        seg.push(quiet, 0.0, (n + 1) * 32)
    assert seg.silent_ms == 6 * 32 and seg.voiced_ms == 4 * 32 and seg.paused
    stopped = seg.end_turn(320)
    assert isinstance(stopped, SpeechStopped) and stopped.audio_end_ms == 320
    assert len(stopped.audio) == 10 * 512
    assert not seg.speaking and seg.end_turn(352) is None


def test_real_speech_with_a_mid_sentence_pause_pauses_without_stopping():
    first, second = speak("What is the capital"), speak("of France?")
    pcm = np.concatenate([silence(500), first, silence(400), second, silence(1000)])
    events = run(pcm, TurnDetection(silence_duration_ms=800), pauses=True)
    assert kinds(events) == ["SpeechStarted", "SpeechStopped"]
    assert "SpeechPaused" in all_kinds(events) and "SpeechResumed" in all_kinds(events)
    pause = next(e for e in events if isinstance(e, SpeechPaused))
    # The pause is reported within the gap, after the first words' voice (Piper's own
    # quiet tail is part of the gap).
    first_end = 500 + int(np.flatnonzero(np.abs(first.astype(np.int32)) > 300)[-1]) // 16
    assert first_end <= pause.audio_end_ms <= first_end + 400
