"""No queue on the media path grows behind a stalled consumer: late inbound frames are
dropped (their time fed as silence), aiortc's decoder queue keeps only the newest second,
and a late outbound track sends no backlog."""

import asyncio

import av
import numpy as np
from aiortc import RTCPeerConnection
from aiortc.rtcrtpreceiver import RemoteStreamTrack

from media.decoder_queue import MAX_DECODER_BACKLOG, LatestFrames, bound_decoder_queues
from media.inbound import MAX_BACKLOG_FRAMES, InboundAudio
from media.outbound import FRAME_SECONDS, MAX_BURST_FRAMES, OutboundAudioTrack

STALLED_FRAMES = 100  # 2 s of 20 ms packets arriving while the reader is stuck


def decoded(value: int) -> av.AudioFrame:
    """A frame as aiortc's Opus decoder hands it over: 20 ms of 48 kHz stereo s16."""
    frame = av.AudioFrame.from_ndarray(
        np.full((1, 960 * 2), value, dtype=np.int16), format="s16", layout="stereo"
    )
    frame.sample_rate = 48000
    return frame


async def test_inbound_backlog_behind_a_stalled_reader_is_bounded():
    track = RemoteStreamTrack(kind="audio")  # aiortc's own, with its unbounded queue
    loud: list[int] = []
    total: list[int] = []
    done = asyncio.Event()

    def on_frame(frame: np.ndarray, end_ms: int) -> None:
        if not total:
            # The reader is stuck on its first frame while 2 s of packets arrive.
            for _ in range(STALLED_FRAMES):
                track._queue.put_nowait(decoded(8000))
            track._queue.put_nowait(None)
        total.append(len(frame))
        loud.append(int(np.count_nonzero(np.abs(frame) > 1000)))

    for _ in range(2):
        track._queue.put_nowait(decoded(8000))
    inbound = InboundAudio(track, on_frame, on_ended=done.set, gap_fill_s=None)
    inbound.start()
    await asyncio.wait_for(done.wait(), 10)
    assert track._queue.qsize() == 0
    # Only the newest frames of the backlog were heard; the rest became silence ...
    assert inbound.frames_dropped >= STALLED_FRAMES - MAX_BACKLOG_FRAMES
    heard_frames = sum(loud) / 320  # 16 kHz samples per 20 ms frame
    assert heard_frames <= MAX_BACKLOG_FRAMES + 4
    # ... and the audio clock still counts every 20 ms that was sent.
    assert inbound.samples_received == (STALLED_FRAMES + 2) * 320


async def test_inbound_reader_keeping_up_drops_nothing():
    track = RemoteStreamTrack(kind="audio")
    heard: list[int] = []
    done = asyncio.Event()
    for _ in range(MAX_BACKLOG_FRAMES):  # a backlog within the bound is all heard
        track._queue.put_nowait(decoded(8000))
    track._queue.put_nowait(None)
    inbound = InboundAudio(
        track,
        lambda f, _ms: heard.append(int(np.count_nonzero(np.abs(f) > 1000))),
        on_ended=done.set,
        gap_fill_s=None,
    )
    inbound.start()
    await asyncio.wait_for(done.wait(), 10)
    assert inbound.frames_dropped == 0
    assert sum(heard) >= (MAX_BACKLOG_FRAMES - 1) * 320


async def test_outbound_sends_no_backlog_after_a_stalled_sender():
    now = [0.0]
    track = OutboundAudioTrack(clock=lambda: now[0])
    track.begin_response("r1")
    track.push(np.full(48000 * 5, 3000, dtype=np.int16), 48000)  # 5 s of reply queued
    await track.recv()  # frame 0 starts the clock at t=0
    now[0] = 2.0  # the sender did not pull for 2 s: 100 slots are past
    burst = 0
    while True:
        coro = track.recv()
        try:
            coro.send(None)
        except StopIteration:  # returned at once: sent back to back
            burst += 1
            continue
        coro.close()  # this one waits for its slot
        break
    assert burst <= MAX_BURST_FRAMES
    assert track.skipped_late_frames >= 2.0 / FRAME_SECONDS - MAX_BURST_FRAMES - 2
    # Nothing of the reply was lost: it goes on from where it was.
    assert track.playout_ms == (1 + burst) * 20
    assert track.queued_ms == 5000 - track.playout_ms


async def test_decoder_queue_behind_a_stalled_decoder_thread_is_bounded():
    """aiortc's receiver feeds its decoder thread through an unbounded queue; a real
    receiver of a negotiated peer connection gets the bounded one, and behind a decoder
    that takes nothing for 10 s of packets only the newest second waits."""
    caller, callee = RTCPeerConnection(), RTCPeerConnection()
    try:
        caller.addTransceiver("audio")
        await caller.setLocalDescription(await caller.createOffer())
        await callee.setRemoteDescription(caller.localDescription)
        assert bound_decoder_queues(callee) == 1
        (receiver,) = callee.getReceivers()
        backlog = receiver._RTCRtpReceiver__decoder_queue
        assert isinstance(backlog, LatestFrames)
        for n in range(500):  # the stalled thread's packets: (codec, encoded frame)
            backlog.put(("opus", n))
        assert backlog.qsize() == MAX_DECODER_BACKLOG
        assert backlog.dropped == 500 - MAX_DECODER_BACKLOG
        assert backlog.get_nowait() == ("opus", 500 - MAX_DECODER_BACKLOG)  # the newest kept
        backlog.put(None)  # the end marker still arrives, after what is left
        while (item := backlog.get_nowait()) is not None:
            assert item[1] >= 500 - MAX_DECODER_BACKLOG
        assert bound_decoder_queues(callee) == 0  # already bounded: left as is
    finally:
        await caller.close()
        await callee.close()
