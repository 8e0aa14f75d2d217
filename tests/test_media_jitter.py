"""The shorter aiortc audio receive buffer, on a real aiortc connection."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from aiortc import RTCPeerConnection
from aiortc.jitterbuffer import JitterBuffer

from media.jitter import shorten_audio_receive_delay
from media.outbound import OutboundAudioTrack
from media.resample import Resampler


def _buffer(pc: RTCPeerConnection) -> JitterBuffer:
    (receiver,) = pc.getReceivers()
    return receiver._RTCRtpReceiver__jitter_buffer  # type: ignore[attr-defined]


async def test_a_tone_arrives_whole_through_the_short_buffer() -> None:
    sender, receiver = RTCPeerConnection(), RTCPeerConnection()
    outbound = OutboundAudioTrack()
    sender.addTrack(outbound)
    received: list[np.ndarray] = []
    track_ready: asyncio.Future[object] = asyncio.get_running_loop().create_future()
    receiver.on("track", track_ready.set_result)

    async def record(track) -> None:
        resampler = Resampler(16000)
        while True:
            received.append(resampler.frame(await track.recv()))

    try:
        await sender.setLocalDescription(await sender.createOffer())
        await receiver.setRemoteDescription(sender.localDescription)
        assert shorten_audio_receive_delay(receiver) == 1
        assert _buffer(receiver)._prefetch == 1
        await receiver.setLocalDescription(await receiver.createAnswer())
        await sender.setRemoteDescription(receiver.localDescription)
        task = asyncio.create_task(record(await asyncio.wait_for(track_ready, 10)))
        await asyncio.sleep(0.3)  # media flows: the buffer holds packets now
        assert shorten_audio_receive_delay(receiver) == 0  # never swapped mid-stream

        outbound.begin_response("r1")
        t = np.arange(48000) / 48000
        outbound.push((10000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16), 48000)
        outbound.end_response()
        await asyncio.wait_for(outbound.wait_drained(), 10)
        await asyncio.sleep(0.3)
        task.cancel()
        loud = sum(len(f) for f in received if len(f) and np.abs(f).max() > 3000)
        assert 0.95 * 16000 <= loud <= 1.05 * 16000  # nothing lost, nothing repeated
    finally:
        await sender.close()
        await receiver.close()


async def test_prefetch_must_fit_the_buffer() -> None:
    pc = RTCPeerConnection()
    try:
        with pytest.raises(ValueError, match="prefetch"):
            shorten_audio_receive_delay(pc, prefetch=16)
    finally:
        await pc.close()
