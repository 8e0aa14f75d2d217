"""InboundAudio: 48 kHz stereo 20 ms frames in, 512-sample 16 kHz frames on a sample clock out."""

import asyncio
import fractions
import logging
import time

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError

from media.inbound import InboundAudio


class FakeAudioTrack:
    """Plays `pcm` (16-bit mono at 48 kHz) as aiortc's Opus decoder would: stereo 20 ms frames."""

    def __init__(self, pcm: np.ndarray, rate: int = 48000, frame_ms: int = 20) -> None:
        self.pcm, self.rate = pcm, rate
        self.step = rate * frame_ms // 1000
        self.pos = 0
        self.gate: asyncio.Event | None = None  # when set, recv() waits on it (a quiet line)

    async def recv(self) -> av.AudioFrame:
        if self.gate is not None:
            await self.gate.wait()
        if self.pos >= len(self.pcm):
            raise MediaStreamError
        chunk = self.pcm[self.pos : self.pos + self.step]
        stereo = np.repeat(chunk, 2).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(stereo, format="s16", layout="stereo")
        frame.sample_rate = self.rate
        frame.pts = self.pos
        frame.time_base = fractions.Fraction(1, self.rate)
        self.pos += self.step
        await asyncio.sleep(0)
        return frame


def ramp_48k(seconds: float) -> np.ndarray:
    """A slow ramp: after 3:1 decimation, it must still rise steadily."""
    n = int(48000 * seconds)
    return np.linspace(-20000, 20000, n).astype(np.int16)


async def run_to_end(track, **kwargs) -> tuple[InboundAudio, list, asyncio.Event]:
    frames: list[tuple[np.ndarray, int]] = []
    ended = asyncio.Event()
    inbound = InboundAudio(
        track, lambda f, ms: frames.append((f, ms)), on_ended=ended.set, **kwargs
    )
    inbound.start()
    await asyncio.wait_for(ended.wait(), 10)
    await inbound.stop()
    return inbound, frames, ended


async def test_frames_are_512_samples_with_audio_clock_positions():
    inbound, frames, _ = await run_to_end(FakeAudioTrack(ramp_48k(2.0)))  # 100 frames of 20 ms
    # 2 s at 16 kHz = 32000 samples = 62 full frames of 512 (31744) and a partial.
    assert abs(inbound.samples_received - 32000) <= 4
    assert inbound.audio_ms == inbound.samples_received // 16
    assert len(frames) == 62
    assert all(f.shape == (512,) and f.dtype == np.int16 for f, _ in frames)
    assert [ms for _, ms in frames] == [32 * (i + 1) for i in range(62)]
    pcm = np.concatenate([f for f, _ in frames])
    # The resampled ramp keeps rising across every frame boundary: nothing lost or reordered.
    assert np.all(np.diff(pcm[50:].astype(np.int32)) >= 0)
    assert abs(int(pcm[16000]) - 0) < 500  # the middle of the ramp is the middle of the clock


async def test_on_ended_fires_and_last_frame_time_is_recorded():
    inbound, frames, ended = await run_to_end(FakeAudioTrack(ramp_48k(0.2)))
    assert ended.is_set()
    assert inbound.last_frame_monotonic is not None
    assert len(frames) == 6  # 3200 samples -> 6 frames of 512


async def test_on_frame_exceptions_do_not_kill_the_reader(caplog):
    seen: list[int] = []

    def flaky(frame: np.ndarray, end_ms: int) -> None:
        seen.append(end_ms)
        if len(seen) % 2:
            raise RuntimeError("boom")

    ended = asyncio.Event()
    inbound = InboundAudio(FakeAudioTrack(ramp_48k(1.0)), flaky, on_ended=ended.set)
    inbound.start()
    await asyncio.wait_for(ended.wait(), 10)
    assert len(seen) == 31
    assert "on_frame failed" in caplog.text


async def test_stop_cancels_a_waiting_reader_without_on_ended():
    track = FakeAudioTrack(ramp_48k(1.0))
    track.gate = asyncio.Event()  # never set: recv() blocks like a silent peer
    ended: list[bool] = []
    inbound = InboundAudio(track, lambda f, ms: None, on_ended=lambda: ended.append(True))
    assert inbound.last_frame_monotonic is None
    inbound.start()
    await asyncio.sleep(0.01)
    await inbound.stop()
    assert ended == []
    assert inbound.samples_received == 0


async def test_other_rates_and_frame_sizes():
    # G.711 arrives as 8 kHz mono; a 10 ms frame size at 16 kHz is 160 samples.
    track = FakeAudioTrack(np.zeros(8000, dtype=np.int16), rate=8000)
    inbound, frames, _ = await run_to_end(track, frame_samples=160)
    assert abs(inbound.samples_received - 16000) <= 4
    assert [ms for _, ms in frames][:3] == [10, 20, 30]
    assert len(frames) == inbound.samples_received // 160


async def test_a_sender_gone_quiet_is_heard_as_silence_on_the_audio_clock():
    """DTX senders send nothing in silence: the missing time comes out as zero frames."""
    track = FakeAudioTrack(np.full(48000, 5000, dtype=np.int16))  # 1 s of loud audio
    frames: list[tuple[np.ndarray, int]] = []
    inbound = InboundAudio(track, lambda f, ms: frames.append((f, ms)), gap_fill_s=0.05)
    inbound.start()
    while track.pos < 24000:  # noqa: ASYNC110 - half a second of audio
        await asyncio.sleep(0.001)
    track.gate = asyncio.Event()  # the line goes quiet
    # A frame already in flight and the resampler's held samples may still come out
    # loud: judge only what is emitted once the gap is well under way.
    await asyncio.sleep(0.15)
    loud = len(frames)
    await asyncio.sleep(0.5)
    quiet = frames[loud:]
    assert len(quiet) >= 8  # ~0.5 s of filled silence, 32 ms per frame
    assert all(not f.any() for f, _ in quiet)
    assert [ms for _, ms in frames] == [32 * (n + 1) for n in range(len(frames))]
    assert inbound.last_frame_monotonic is not None
    track.gate.set()  # packets again: real audio continues on the same clock
    await asyncio.sleep(0.05)
    assert frames[-1][0].any()
    await inbound.stop()


def noise(seconds: float, rms: float, seed: int = 1) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(int(48000 * seconds)) * rms).astype(
        np.int16
    )


async def test_a_gap_in_the_middle_of_speech_waits_for_the_late_audio():
    """The network holds packets back mid-word (300 ms): no silence is spliced in, the late
    audio follows the early on the same clock. Only a quiet sender goes quiet (DTX)."""
    speech = np.concatenate([noise(1.0, 100), noise(1.0, 5000, seed=2)])
    track = FakeAudioTrack(speech)
    frames: list[np.ndarray] = []
    inbound = InboundAudio(track, lambda f, ms: frames.append(f), gap_fill_s=0.05)
    inbound.start()
    while track.pos < 48000 + 24000:  # noqa: ASYNC110 - half a second into the speech
        await asyncio.sleep(0.001)
    track.gate = asyncio.Event()
    await asyncio.sleep(0.3)  # six times the quiet line's gap
    track.gate.set()
    while track.pos < len(speech):  # noqa: ASYNC110
        await asyncio.sleep(0.001)
    await asyncio.sleep(0.05)
    await inbound.stop()
    audio = np.concatenate(frames)
    loud = audio[16000 + 512 :]  # past the floor and the resampler's edge
    chunks = [f for f in np.split(loud[: len(loud) // 512 * 512], len(loud) // 512)]
    assert all(np.abs(f).max() > 1000 for f in chunks), "silence spliced into the speech"
    assert len(audio) <= len(speech) // 3 + 512  # no extra time on the clock


async def test_a_sender_quiet_before_its_gap_is_filled_at_once():
    """Speech, then the sender's own quiet for 300 ms, then nothing (Opus DTX): the gap
    is silence after `gap_fill_s`, not after the voiced wait."""
    pcm = np.concatenate([noise(0.5, 100), noise(0.5, 5000, seed=2), noise(1.0, 100, seed=3)])
    track = FakeAudioTrack(pcm)
    frames: list[tuple[np.ndarray, int]] = []
    inbound = InboundAudio(
        track, lambda f, ms: frames.append((f, ms)), gap_fill_s=0.05, voiced_gap_fill_s=5.0
    )
    inbound.start()
    while track.pos < 48000 * 13 // 10:  # noqa: ASYNC110 - 300 ms into the quiet
        await asyncio.sleep(0.001)
    track.gate = asyncio.Event()  # (the track still holds audio: it has not ended)
    await asyncio.sleep(0.1)
    before = len(frames)
    await asyncio.sleep(0.4)
    filled = frames[before:]
    assert len(filled) >= 8 and all(not f.any() for f, _ in filled)
    await inbound.stop()


async def test_a_link_dead_after_speech_is_logged_once_not_at_every_fill(caplog):
    """Speech, then no packet at all: each `voiced_gap_fill_s` is filled with silence,
    and the operator's log says so once for the gap, not once per fill."""
    track = FakeAudioTrack(np.concatenate([noise(0.5, 100), noise(2.0, 5000, seed=2)]))
    frames: list[np.ndarray] = []
    inbound = InboundAudio(
        track, lambda f, ms: frames.append(f), gap_fill_s=0.02, voiced_gap_fill_s=0.05
    )
    caplog.set_level(logging.INFO, logger="media.inbound")
    inbound.start()
    while track.pos < 48000:  # noqa: ASYNC110 - half a second into the speech
        await asyncio.sleep(0.001)
    track.gate = asyncio.Event()
    await asyncio.sleep(0.5)  # ten voiced waits
    await inbound.stop()
    fills = [r for r in caplog.records if "no packet for" in r.getMessage()]
    assert sum(not f.any() for f in frames) >= 8  # the silence was fed, fill after fill
    assert len(fills) == 1, [r.getMessage() for r in fills]


class StalledLine:
    """Frames handed over by a 'network' task on a schedule, as aiortc's receiver does."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[av.AudioFrame] = asyncio.Queue()
        self.pts = 0

    def arrive(self, frames: int) -> None:
        """Packets reach the socket: decoding them takes a few loop hops (aiortc's DTLS,
        SRTP and decoder steps) before the frames are in the track's queue."""

        async def hops() -> None:
            for _ in range(3):
                await asyncio.sleep(0)
            self.deliver(frames)

        self.task = asyncio.get_running_loop().create_task(hops())

    def deliver(self, frames: int = 1) -> None:
        for _ in range(frames):
            stereo = np.full((1, 1920), 4000, dtype=np.int16)
            frame = av.AudioFrame.from_ndarray(stereo, format="s16", layout="stereo")
            frame.sample_rate, frame.pts = 48000, self.pts
            frame.time_base = fractions.Fraction(1, 48000)
            self.pts += 960
            self.queue.put_nowait(frame)

    async def recv(self) -> av.AudioFrame:
        return await self.queue.get()


async def test_a_stalled_event_loop_is_no_gap_in_the_audio():
    """The loop blocks for 150 ms (a CPU-starved server) while the next packets are
    already due: they must come out as audio, with no silence spliced in before them."""
    line = StalledLine()
    frames: list[np.ndarray] = []
    inbound = InboundAudio(line, lambda f, ms: frames.append(f), gap_fill_s=0.1)
    inbound.start()
    line.deliver(10)
    await asyncio.sleep(0.05)
    loop = asyncio.get_running_loop()
    loop.call_later(0.01, line.arrive, 10)  # due long before the gap timeout...
    time.sleep(0.15)  # noqa: ASYNC251 - the stall under test: the loop blocked past both
    await asyncio.sleep(0.1)
    await inbound.stop()
    assert len(frames) >= 10
    assert all(f.any() for f in frames), "silence was spliced into continuous audio"


async def test_no_gap_filling_before_the_first_packet_or_when_off():
    track = FakeAudioTrack(np.zeros(4800, dtype=np.int16))
    track.gate = asyncio.Event()
    frames: list = []
    inbound = InboundAudio(track, lambda f, ms: frames.append(ms), gap_fill_s=0.02)
    inbound.start()
    await asyncio.sleep(0.2)
    assert frames == []  # nothing received yet: no clock to keep
    await inbound.stop()
