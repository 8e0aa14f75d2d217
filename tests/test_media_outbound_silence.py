"""Idle outbound frames go out as a cached Opus silence packet: no encoding, no thread
hop, no per-sample audio level in aiortc; replies and the frames around them are encoded."""

import asyncio

import av
import numpy as np
import pytest
from aiortc import RTCPeerConnection
from aiortc.codecs.opus import OpusDecoder
from aiortc.jitterbuffer import JitterFrame

from media.inbound import InboundAudio
from media.outbound import (
    DTX_INTERVAL_FRAMES,
    FRAME_SAMPLES,
    SILENCE_HANGOVER_FRAMES,
    OutboundAudioTrack,
    opus_dtx_packet,
    opus_silence_packet,
)


def fast_track() -> OutboundAudioTrack:
    now = [0.0]

    def clock() -> float:
        now[0] += 0.02
        return now[0]

    track = OutboundAudioTrack(clock=clock, resync_silence=False)
    track.silence_packet = opus_silence_packet()
    return track


def test_the_packet_decodes_to_silence():
    packet = opus_silence_packet()
    assert 0 < len(packet) <= 8
    decoder = OpusDecoder()
    for n in range(5):
        (frame,) = decoder.decode(JitterFrame(data=packet, timestamp=n * FRAME_SAMPLES))
        assert frame.samples == FRAME_SAMPLES
        assert not frame.to_ndarray().any()


async def test_idle_is_packets_after_the_hangover_and_replies_are_frames():
    track = fast_track()
    kinds = [type(await track.recv()) for _ in range(SILENCE_HANGOVER_FRAMES + 5)]
    # The stream starts encoded (aiortc anchors its timestamps there), then goes cheap.
    assert kinds[:SILENCE_HANGOVER_FRAMES] == [av.AudioFrame] * SILENCE_HANGOVER_FRAMES
    assert kinds[SILENCE_HANGOVER_FRAMES:] == [av.Packet] * 5
    track.begin_response("r1")
    waiting = await track.recv()  # open response, audio not there yet: encoded
    assert isinstance(waiting, av.AudioFrame)
    track.push(np.full(FRAME_SAMPLES * 3, 3000, dtype=np.int16), 48000)
    track.end_response()
    reply = [await track.recv() for _ in range(3)]
    assert all(isinstance(f, av.AudioFrame) and f.to_ndarray().any() for f in reply)
    after = [await track.recv() for _ in range(SILENCE_HANGOVER_FRAMES + 3)]
    assert all(isinstance(f, av.AudioFrame) for f in after[:SILENCE_HANGOVER_FRAMES])
    assert all(isinstance(f, av.Packet) for f in after[SILENCE_HANGOVER_FRAMES:])
    # Every item carries the track's own clock: pts advance by one frame each.
    items = [*reply, *after]
    assert [i.pts for i in items] == [items[0].pts + n * FRAME_SAMPLES for n in range(len(items))]


async def test_paused_reply_is_encoded():
    track = fast_track()
    for _ in range(SILENCE_HANGOVER_FRAMES + 2):
        await track.recv()
    track.begin_response("r1")
    track.push(np.full(FRAME_SAMPLES * 40, 3000, dtype=np.int16), 48000)
    track.pause()
    paused = [await track.recv() for _ in range(SILENCE_HANGOVER_FRAMES + 3)]
    assert all(isinstance(f, av.AudioFrame) for f in paused)


async def test_with_dtx_an_idle_stream_is_one_short_packet_per_400_ms():
    track = fast_track()
    track.dtx_packet = opus_dtx_packet()
    assert len(track.dtx_packet) == 1  # a TOC byte alone: receivers read it as DTX
    head = [await track.recv() for _ in range(SILENCE_HANGOVER_FRAMES)]
    assert all(isinstance(f, av.AudioFrame) for f in head)
    idle = [await track.recv() for _ in range(3)]
    assert all(isinstance(p, av.Packet) and bytes(p) == track.dtx_packet for p in idle)
    # One packet per DTX_INTERVAL_FRAMES slots, its pts on the track's clock.
    start = SILENCE_HANGOVER_FRAMES * FRAME_SAMPLES
    step = DTX_INTERVAL_FRAMES * FRAME_SAMPLES
    assert [p.pts for p in idle] == [start, start + step, start + 2 * step]
    assert track.frames_not_sent == 2 * (DTX_INTERVAL_FRAMES - 1)
    # A reply begun in the gap goes out at its next slot, every frame of it encoded.
    track.begin_response("r1")
    track.push(np.full(FRAME_SAMPLES * 3, 3000, dtype=np.int16), 48000)
    track.end_response()
    reply = [await track.recv() for _ in range(4)]
    assert reply[0].pts == start + 2 * step + FRAME_SAMPLES
    assert all(isinstance(f, av.AudioFrame) for f in reply)
    assert [f.to_ndarray().any() for f in reply] == [True, True, True, False]


async def test_without_dtx_every_idle_slot_is_sent():
    track = fast_track()
    items = [await track.recv() for _ in range(SILENCE_HANGOVER_FRAMES + 30)]
    assert [i.pts for i in items] == [n * FRAME_SAMPLES for n in range(len(items))]
    assert track.frames_not_sent == 0


@pytest.mark.parametrize("dtx", [False, True], ids=["silence packets", "dtx"])
async def test_reply_after_idle_packets_arrives_whole_over_aiortc(dtx: bool):
    """Real peers: the call idles on packets (or on DTX, mostly nothing), then a 1 s tone
    reply is heard in full."""
    sender, receiver = RTCPeerConnection(), RTCPeerConnection()
    outbound = OutboundAudioTrack()
    outbound.silence_packet = opus_silence_packet()
    if dtx:
        outbound.dtx_packet = opus_dtx_packet()
    sender.addTrack(outbound)
    frames: list[np.ndarray] = []
    ready: asyncio.Future[InboundAudio] = asyncio.get_running_loop().create_future()

    @receiver.on("track")
    def on_track(track) -> None:
        inbound = InboundAudio(track, lambda frame, _ms: frames.append(frame))
        inbound.start()
        ready.set_result(inbound)

    try:
        await sender.setLocalDescription(await sender.createOffer())
        await receiver.setRemoteDescription(sender.localDescription)
        await receiver.setLocalDescription(await receiver.createAnswer())
        await sender.setRemoteDescription(receiver.localDescription)
        inbound = await asyncio.wait_for(ready, 10)
        await asyncio.sleep(0.6)  # past the hangover: idle frames are packets now
        assert outbound._encode_left == 0
        assert (outbound.frames_not_sent > 0) == dtx
        received_idle = len(frames)
        outbound.begin_response("r1")
        t = np.arange(48000) / 48000
        outbound.push((10000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16), 48000)
        outbound.end_response()
        await asyncio.wait_for(outbound.wait_drained(), 10)
        for _ in range(100):
            loud = np.array([np.abs(f).max() > 3000 for f in frames])
            if loud.sum() * 32 >= 900 and not loud[-3:].any():
                break
            await asyncio.sleep(0.05)
        assert received_idle > 5, "idle packets were received and decoded"
        loud = np.array([np.abs(f).max() > 3000 for f in frames])
        assert 900 <= loud.sum() * 32 <= 1100
        await inbound.stop()
    finally:
        await sender.close()
        await receiver.close()
