"""OutboundAudioTrack: pacing, pts, exact sample order, clear/pause/resume, playout, drain."""

import asyncio
import itertools
import time

import numpy as np
import pytest
from aiortc.mediastreams import MediaStreamError

from media.outbound import OutboundAudioTrack


class LateClock:
    """A clock that is always far ahead: the track believes it is late, so never sleeps."""

    def __init__(self) -> None:
        self._ticks = itertools.count()

    def __call__(self) -> float:
        return 1000.0 * next(self._ticks)


def fast_track() -> OutboundAudioTrack:
    return OutboundAudioTrack(clock=LateClock(), resync_silence=False)


def ramp(n: int) -> np.ndarray:
    """Distinct non-zero samples, so any loss, repeat or reorder shows."""
    return (np.arange(n) % 30000 + 1).astype(np.int16)


async def take(track: OutboundAudioTrack, n: int) -> list[np.ndarray]:
    return [(await track.recv()).to_ndarray().reshape(-1) for _ in range(n)]


def audio_of(frames: list[np.ndarray]) -> np.ndarray:
    pcm = np.concatenate(frames)
    return pcm[pcm != 0]


async def test_frames_are_20ms_48k_mono_with_steady_pts_and_silence_when_idle():
    track = fast_track()
    frames = [await track.recv() for _ in range(10)]
    assert [f.pts for f in frames] == [960 * i for i in range(10)]
    for f in frames:
        assert f.samples == 960 and f.sample_rate == 48000
        assert f.format.name == "s16" and f.layout.name == "mono"
        assert f.time_base.numerator == 1 and f.time_base.denominator == 48000
        assert not f.to_ndarray().any()
    assert not track.playing and track.playout_ms == 0 and track.response_id is None


async def test_pts_keeps_counting_through_clear_and_pause():
    track = fast_track()
    track.begin_response("r1")
    track.push(ramp(4800), 48000)
    pts = [(await track.recv()).pts for _ in range(2)]
    track.pause()
    pts += [(await track.recv()).pts for _ in range(2)]
    track.clear()
    pts += [(await track.recv()).pts for _ in range(2)]
    assert pts == [960 * i for i in range(6)]


async def test_pushed_audio_comes_out_exactly_and_in_order():
    track = fast_track()
    signal = ramp(960 * 7 + 300)
    track.begin_response("r1")
    for part in np.array_split(signal, 5):  # uneven chunks, not frame-aligned
        track.push(part, 48000)
    track.end_response()
    frames = await take(track, 10)
    np.testing.assert_array_equal(audio_of(frames), signal)
    assert len(np.concatenate(frames[:8])) == 8 * 960  # last partial frame padded
    assert not frames[8].any() and not frames[9].any()


async def test_other_rates_are_resampled_to_48k():
    track = fast_track()
    track.begin_response("r1")
    t = np.arange(22050) / 22050
    track.push((8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16), 22050)
    track.push((8000 * np.sin(2 * np.pi * 440 * t[:11025])).astype(np.int16), 16000)
    track.end_response()
    # 1 s at 22050 Hz + 11025 samples at 16 kHz = 1 s + ~0.689 s at 48 kHz
    assert abs(track.queued_ms - 1689) <= 2
    await take(track, 85)
    assert track.playout_ms == pytest.approx(1689, abs=2)


async def test_playout_counts_20ms_per_sent_frame_of_the_response():
    track = fast_track()
    await take(track, 3)  # idle frames don't count
    track.begin_response("r1")
    track.push(ramp(960 * 10), 48000)
    assert track.queued_ms == 200 and track.playing
    counts = []
    for _ in range(4):
        await track.recv()
        counts.append(track.playout_ms)
    assert counts == [20, 40, 60, 80]
    assert track.queued_ms == 120
    track.begin_response("r2")  # a new response restarts the count
    assert track.playout_ms == 0 and track.queued_ms == 0


async def test_clear_silences_the_next_frame_and_reports_what_was_sent():
    track = fast_track()
    stopped: list[str] = []
    track.on_playback_stopped = stopped.append
    track.begin_response("r1")
    track.push(ramp(960 * 20), 48000)
    waiter = asyncio.create_task(track.wait_drained())
    frames = await take(track, 6)
    assert all(f.any() for f in frames)
    assert track.clear() == 120
    assert not (await track.recv()).to_ndarray().any()
    assert track.queued_ms == 0 and not track.playing and not track.active
    await asyncio.wait_for(waiter, 1)
    # Late TTS audio after the clear is dropped, and clear is not a natural stop.
    track.push(ramp(960 * 5), 48000)
    assert not any(f.any() for f in await take(track, 3))
    assert stopped == []
    assert track.playout_ms == 120 and track.response_id == "r1"


async def test_pause_and_resume_lose_and_repeat_nothing():
    track = fast_track()
    signal = ramp(960 * 12)
    track.begin_response("r1")
    track.push(signal, 48000)
    track.end_response()
    frames = await take(track, 4)
    track.pause()
    assert track.paused and not track.playing
    paused = await take(track, 5)
    assert not any(f.any() for f in paused)
    assert track.playout_ms == 80 and track.queued_ms == 160
    track.resume()
    frames += await take(track, 10)
    np.testing.assert_array_equal(audio_of(frames), signal)
    assert track.playout_ms == 240


async def test_playback_callbacks_fire_once_each_at_the_right_frames():
    track = fast_track()
    log: list[tuple[str, str, int]] = []
    track.on_playback_started = lambda rid: log.append(("started", rid, track._frames))
    track.on_playback_stopped = lambda rid: log.append(("stopped", rid, track._frames))
    await take(track, 2)
    track.begin_response("resp_1")
    track.push(ramp(960 * 3), 48000)
    await take(track, 2)
    track.end_response()
    await take(track, 4)
    # Frames 0-1 idle; 2, 3, 4 carry audio; started when frame 2 went out, stopped with 4.
    assert log == [("started", "resp_1", 2), ("stopped", "resp_1", 4)]


async def test_callback_exceptions_do_not_break_the_stream(caplog):
    track = fast_track()

    def boom(rid: str) -> None:
        raise RuntimeError(rid)

    track.on_playback_started = boom
    track.on_playback_stopped = boom
    track.begin_response("r1")
    track.push(ramp(960), 48000)
    track.end_response()
    frames = await take(track, 2)
    assert frames[0].any() and "callback failed" in caplog.text


async def test_wait_drained_returns_only_after_the_last_frame_is_sent():
    track = fast_track()
    track.begin_response("r1")
    track.push(ramp(960 * 3), 48000)
    waiter = asyncio.create_task(track.wait_drained())
    await take(track, 3)
    await asyncio.sleep(0)
    assert not waiter.done()  # all sent, but the response is still open
    track.end_response()
    await asyncio.sleep(0)
    assert not waiter.done()  # ended, but stopped is reported by the next frame
    await take(track, 1)
    await asyncio.wait_for(waiter, 1)


async def test_stopped_fires_when_end_comes_after_the_audio_was_sent():
    track = fast_track()
    stopped: list[str] = []
    track.on_playback_stopped = stopped.append
    track.begin_response("r1")
    track.push(ramp(960 * 2), 48000)
    await take(track, 3)
    track.end_response()
    await take(track, 1)
    assert stopped == ["r1"] and not track.active


async def test_empty_response_drains_at_once_without_callbacks():
    track = fast_track()
    calls: list[str] = []
    track.on_playback_started = calls.append
    track.on_playback_stopped = calls.append
    track.begin_response("r1")
    track.end_response()
    await asyncio.wait_for(track.wait_drained(), 1)
    await take(track, 3)
    assert calls == []


async def test_underrun_waits_for_a_whole_frame_until_the_response_ends():
    track = fast_track()
    track.begin_response("r1")
    track.push(ramp(500), 48000)
    assert not (await track.recv()).to_ndarray().any()  # TTS behind: silence, keep the 500
    track.push(ramp(1000)[500:], 48000)
    first = (await track.recv()).to_ndarray().reshape(-1)
    np.testing.assert_array_equal(first, ramp(960))
    track.end_response()
    last = (await track.recv()).to_ndarray().reshape(-1)
    np.testing.assert_array_equal(last[:40], ramp(1000)[960:])
    assert not last[40:].any()
    assert track.playout_ms == 1000 // 48


async def test_new_response_supersedes_the_old_one():
    track = fast_track()
    track.begin_response("r1")
    track.push(np.full(960 * 5, 5, dtype=np.int16), 48000)
    old_waiter = asyncio.create_task(track.wait_drained())
    await take(track, 1)
    track.pause()
    track.begin_response("r2")
    await asyncio.wait_for(old_waiter, 1)
    track.push(np.full(960, 7, dtype=np.int16), 48000)
    track.end_response()
    (frame,) = await take(track, 1)
    assert (frame == 7).all()  # r1's leftovers are gone, and the pause was lifted
    assert track.response_id == "r2" and track.playout_ms == 20


async def test_stop_ends_the_track_and_releases_waiters():
    track = fast_track()
    track.begin_response("r1")
    track.push(ramp(960 * 50), 48000)
    waiter = asyncio.create_task(track.wait_drained())
    await take(track, 1)
    track.stop()
    assert track.readyState == "ended"
    await asyncio.wait_for(waiter, 1)
    with pytest.raises(MediaStreamError):
        await track.recv()


async def test_a_late_loop_catches_up_without_drifting():
    now = [0.0]
    track = OutboundAudioTrack(clock=lambda: now[0])
    track.begin_response("r1")
    track.push(ramp(960 * 20), 48000)  # audio to send: a late loop bursts to catch up
    await track.recv()  # frame 0 starts the clock at t=0
    now[0] = 0.1  # the loop stalled for 100 ms: frames 1-5 are due
    for _ in range(5):
        coro = track.recv()
        with pytest.raises(StopIteration):  # completes without awaiting anything
            coro.send(None)
    coro = track.recv()  # frame 6 is due at 0.12: it must wait
    assert coro.send(None) is not None
    coro.close()


async def test_real_clock_pacing_keeps_real_time():
    track = OutboundAudioTrack()
    start = time.monotonic()
    frames = [await track.recv() for _ in range(51)]  # frame 0 is immediate
    assert time.monotonic() - start >= 0.9
    assert frames[-1].pts == 50 * 960


@pytest.mark.parametrize("stop", ["pause", "clear"])
async def test_silenced_at_marks_the_first_silent_frame_after_a_stop(stop):
    track = fast_track()
    track.begin_response("r1")
    track.push(ramp(9600), 48000)
    await take(track, 2)
    assert track.silenced_at is None
    getattr(track, stop)()
    assert track.silenced_at is None  # not yet: the next frame is what goes silent
    (frame,) = await take(track, 1)
    assert not frame.any()
    first = track.silenced_at
    assert first is not None
    await take(track, 2)
    assert track.silenced_at == first  # later silent frames do not move it
    if stop == "pause":
        track.resume()
        assert (await take(track, 1))[0].any()


async def test_stopping_an_idle_track_sets_no_silence_time():
    track = fast_track()
    track.pause()
    track.clear()
    await take(track, 3)
    assert track.silenced_at is None


async def test_a_late_loop_with_nothing_to_say_skips_the_missed_silence():
    now = [0.0]
    track = OutboundAudioTrack(clock=lambda: now[0])
    assert (await track.recv()).pts == 0
    now[0] = 0.1  # stalled 100 ms while idle: no burst of five silent frames
    late = await track.recv()
    assert late.pts == 5 * 960 and not late.to_ndarray().any()
    coro = track.recv()  # and the next frame is due on the normal 20 ms grid
    assert coro.send(None) is not None
    coro.close()
    # With a response open (TTS may push any moment) the track does not skip.
    track.begin_response("r1")
    now[0] = 0.3
    assert (await track.recv()).pts == 6 * 960
