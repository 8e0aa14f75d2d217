"""Both tracks through a real aiortc connection: Opus out, Opus in, pitch and length intact."""

import asyncio

import numpy as np
from aiortc import RTCPeerConnection

from media.inbound import InboundAudio
from media.outbound import OutboundAudioTrack


async def test_tone_survives_an_aiortc_loopback():
    sender, receiver = RTCPeerConnection(), RTCPeerConnection()
    outbound = OutboundAudioTrack()
    sender.addTrack(outbound)
    frames: list[np.ndarray] = []
    inbound_ready: asyncio.Future[InboundAudio] = asyncio.get_running_loop().create_future()

    @receiver.on("track")
    def on_track(track) -> None:
        inbound = InboundAudio(track, lambda frame, _ms: frames.append(frame))
        inbound.start()
        inbound_ready.set_result(inbound)

    try:
        await sender.setLocalDescription(await sender.createOffer())
        await receiver.setRemoteDescription(sender.localDescription)
        await receiver.setLocalDescription(await receiver.createAnswer())
        await sender.setRemoteDescription(receiver.localDescription)
        inbound = await asyncio.wait_for(inbound_ready, 10)

        outbound.begin_response("r1")
        t = np.arange(48000) / 48000
        outbound.push((10000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16), 48000)
        outbound.end_response()
        await asyncio.wait_for(outbound.wait_drained(), 10)
        assert outbound.playout_ms == 1000

        def loud() -> np.ndarray:
            return np.array([np.abs(f).max() > 3000 for f in frames], dtype=bool)

        for _ in range(100):  # until the tone has arrived and silence follows it
            flags = loud()
            if flags.sum() * 32 >= 900 and not flags[-3:].any():
                break
            await asyncio.sleep(0.05)
        flags = loud()
        assert 900 <= flags.sum() * 32 <= 1100
        tone = np.concatenate([f for f, is_loud in zip(frames, flags, strict=True) if is_loud])
        spectrum = np.abs(np.fft.rfft(tone * np.hanning(len(tone))))
        assert abs(np.fft.rfftfreq(len(tone), 1 / 16000)[np.argmax(spectrum)] - 440) < 5
        await inbound.stop()
    finally:
        await sender.close()
        await receiver.close()
