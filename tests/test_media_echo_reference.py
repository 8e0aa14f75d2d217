"""The far-end reference: the outbound track's frame hook, the timeline, the history ring."""

import itertools

import numpy as np

from media.echo.delay import EchoDelayEstimator
from media.echo.reference import BLOCK, History, ReferenceTimeline
from media.outbound import OutboundAudioTrack
from tests.speech import speak


class FakeLateClock:
    """Always far ahead, so the track never sleeps; each read is 1 s later."""

    def __init__(self) -> None:
        self._ticks = itertools.count()

    def __call__(self) -> float:
        return float(next(self._ticks))


async def test_track_reports_every_sent_frame_with_its_time():
    track = OutboundAudioTrack(clock=FakeLateClock())
    seen: list[tuple[np.ndarray, float]] = []
    track.on_frame_sent = lambda pcm, t: seen.append((pcm.copy(), t))
    track.begin_response("r1")
    track.push(np.full(960 * 2, 1000, np.int16), 48000)
    track.end_response()
    frames = [(await track.recv()).to_ndarray().reshape(-1) for _ in range(4)]
    assert len(seen) == 4
    for (pcm, _), frame in zip(seen, frames, strict=True):
        np.testing.assert_array_equal(pcm, frame)  # exactly what was sent, silence included
    assert [bool(pcm.any()) for pcm, _ in seen] == [True, True, False, False]
    times = [t for _, t in seen]
    assert times == sorted(times)


async def test_a_failing_frame_hook_does_not_break_the_stream():
    track = OutboundAudioTrack(clock=FakeLateClock(), resync_silence=False)

    def boom(pcm: np.ndarray, t: float) -> None:
        raise RuntimeError("boom")

    track.on_frame_sent = boom
    frames = [await track.recv() for _ in range(3)]
    assert [f.pts for f in frames] == [0, 960, 1920]


def test_history_reads_any_window_and_forgets_old_items():
    h = History(keep=10, dtype=np.float64, fill=-1.0)
    h.append(np.arange(7.0))
    h.append(np.arange(7.0, 15.0))
    assert (h.start, h.end) == (0, 15)  # at least `keep` items are held
    np.testing.assert_array_equal(h.get(12, 17), [12, 13, 14, -1, -1])
    h.append(np.arange(15.0, 25.0))
    assert h.end == 25 and 5 <= h.start <= 15
    np.testing.assert_array_equal(h.get(h.start - 2, h.start + 1), [-1, -1, h.start])
    np.testing.assert_array_equal(h.get(20, 25), [20, 21, 22, 23, 24])
    h.append(np.arange(25.0, 50.0))  # longer than keep
    np.testing.assert_array_equal(h.get(38, 42), [-1, -1, 40, 41])  # only the newest 10
    assert h.get(0, 2).tolist() == [-1, -1]


def test_timeline_places_samples_by_count_and_fills_real_gaps():
    timeline = ReferenceTimeline()
    tone = (np.sin(np.arange(960) / 10) * 8000).astype(np.int16)
    for n in range(50):
        timeline.add(tone, 10.0 + n * 0.02 + (0.015 if n % 7 == 3 else 0.0))  # bursty sends
    assert abs(timeline.samples.end - 50 * 320) <= 32  # jitter moved nothing
    assert abs(timeline.index_at(11.0) - 16000) < 1e-6
    timeline.add(tone, 12.0)  # 1 s after the last frame was due: a gap of silence
    assert abs(timeline.samples.end - (2 * 16000 + 320)) <= 64
    assert timeline.power.end == timeline.samples.end // BLOCK
    gap = timeline.samples.get(17000, 31000)
    assert not np.any(np.abs(gap) > 1)


def test_delay_estimator_finds_and_follows_a_delay_change():
    """Speech envelopes: 300 ms of delay, then the path changes to 520 ms."""
    texts = ["One two three four five.", "The quick brown fox.", "Six, seven.", "Eight and nine."]
    speech = np.concatenate([speak(text, 16000) for text in texts * 2])
    speech = speech[: len(speech) // BLOCK * BLOCK].astype(float)
    blocks = np.mean(speech.reshape(-1, BLOCK) ** 2, axis=1)
    ref = History(len(blocks) + 10)
    ref.append(blocks)
    estimator = EchoDelayEstimator()
    rng = np.random.default_rng(1)
    half = len(blocks) // 2
    seen = []
    for end in range(8 + 400, len(blocks), 8):  # one 32 ms frame = 8 blocks
        lag = 75 if end < half else 130  # 300 ms, then 520 ms
        mic = ref.get(end - 8 - lag, end - lag) * 0.1 + rng.uniform(100, 400, 8)
        estimator.push(mic, end - 1, ref)
        seen.append((end, estimator.delay_seconds))
    before = [d for end, d in seen if half - 100 < end < half and d is not None]
    after = [d for end, d in seen[-20:]]
    assert before and all(abs(d - 0.300) < 0.012 for d in before), before
    assert all(d is not None and abs(d - 0.520) < 0.012 for d in after), after
