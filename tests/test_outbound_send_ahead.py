"""The outbound track for a WebSocket client: frames say whose audio they hold, a reply may be
handed out `send_ahead_s` early (never the silence), and `clear()` warns before it drops."""

from __future__ import annotations

import asyncio

import numpy as np

from media.outbound import FRAME_SAMPLES, OutboundAudioTrack


class FrozenClock:
    """Time stands still unless a test moves it: what is handed out early shows plainly."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def ready_now(track: OutboundAudioTrack):
    """The next frame if the track hands it out without waiting, else None."""
    try:
        return await asyncio.wait_for(track.next_frame(), 0.005)
    except TimeoutError:
        return None


async def test_reply_frames_are_handed_out_up_to_send_ahead_early() -> None:
    clock = FrozenClock()
    track = OutboundAudioTrack(clock=clock, send_ahead_s=0.2)
    first = await track.next_frame()  # starts the clock: silence, nothing queued
    assert first.response_id is None
    track.begin_response("resp_a")
    track.push(np.full(48000, 1000, np.int16), 48000)  # 1 s
    early = []
    while (frame := await ready_now(track)) is not None:
        early.append(frame)
    # Frames 1..10 are due within 200 ms of now: handed out at once, all the reply's.
    assert len(early) == 10
    assert {f.response_id for f in early} == {"resp_a"}
    assert track.playout_ms == 200
    track.stop()


async def test_without_send_ahead_nothing_comes_early() -> None:
    clock = FrozenClock()
    track = OutboundAudioTrack(clock=clock)
    await track.next_frame()
    track.begin_response("resp_b")
    track.push(np.full(48000, 1000, np.int16), 48000)
    assert await ready_now(track) is None
    track.stop()


async def test_the_last_frame_of_a_reply_is_marked_and_silence_is_not_sent_ahead() -> None:
    clock = FrozenClock()
    track = OutboundAudioTrack(clock=clock, send_ahead_s=0.2)
    await track.next_frame()
    track.begin_response("resp_c")
    track.push(np.full(FRAME_SAMPLES * 3, 1000, np.int16), 48000)
    track.end_response()
    frames = [await ready_now(track) for _ in range(3)]
    assert [f.last for f in frames] == [False, False, True]
    assert await ready_now(track) is None  # the silence after it waits for its time
    track.stop()


def test_clear_tells_the_consumer_first() -> None:
    track = OutboundAudioTrack()
    seen: list[tuple[str, int]] = []
    track.on_cleared = lambda response_id: seen.append((response_id, track.queued_ms))
    track.begin_response("resp_d")
    track.push(np.zeros(48000, np.int16), 48000)
    track.clear()
    assert seen == [("resp_d", 1000)]  # called before the queue was dropped
    track.clear()  # nothing active: no second call
    assert len(seen) == 1
    track.stop()


async def test_the_client_has_played_only_what_was_due_when_the_pause_began() -> None:
    clock = FrozenClock()
    track = OutboundAudioTrack(clock=clock, send_ahead_s=0.2)
    await track.next_frame()  # frame 0, due now
    track.begin_response("resp_e")
    track.push(np.full(48000, 1000, np.int16), 48000)
    while await ready_now(track) is not None:
        pass
    for _ in range(25):  # half a second on, the client has played what was due
        clock.now += 0.02
        while await ready_now(track) is not None:
            pass
    assert track.playout_ms == 700  # sent: up to 200 ms ahead of the clock
    assert track.client_played_ms == 500
    track.pause()
    clock.now += 0.3  # paused: its buffer was not played on
    assert track.client_played_ms == 500
    track.resume()
    track.stop()


def test_over_rtp_what_was_sent_is_what_was_played() -> None:
    track = OutboundAudioTrack()
    track.begin_response("resp_f")
    assert track.client_played_ms == track.playout_ms == 0
