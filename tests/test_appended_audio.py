"""`input_audio_buffer.append` → 32 ms frames at 16 kHz: checks, rate limit, audio clock."""

from __future__ import annotations

import asyncio
import base64

import numpy as np
import pytest

from media.wire_audio import WireFormat
from server.call.appended_audio import FRAME_SAMPLES, AppendedAudio
from server.call.ports import CallControlError

PCM24 = WireFormat("pcm16", 24000)
PCM16K = WireFormat("pcm16", 16000)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def b64(pcm: np.ndarray) -> str:
    return base64.b64encode(pcm.astype("<i2").tobytes()).decode()


def collect() -> tuple[list[tuple[np.ndarray, int]], AppendedAudio]:
    frames: list[tuple[np.ndarray, int]] = []
    audio = AppendedAudio(lambda f, end: frames.append((f, end)), burst_s=5.0, clock=Clock())
    return frames, audio


async def test_appends_are_cut_into_frames_on_an_audio_clock() -> None:
    frames, audio = collect()
    pcm = (np.arange(16000) % 1000).astype(np.int16)
    for chunk in np.array_split(pcm, 7):  # chunk sizes that are not multiples of a frame
        audio.append(b64(chunk), PCM16K)
        await audio.feed()
    assert len(frames) == 16000 // FRAME_SAMPLES
    assert all(len(f) == FRAME_SAMPLES for f, _ in frames)
    assert [end for _, end in frames][:3] == [32, 64, 96]
    assert np.array_equal(np.concatenate([f for f, _ in frames]), pcm[: len(frames) * 512])
    partial = audio.take_partial()
    assert np.array_equal(partial, pcm[len(frames) * 512 :])
    assert len(audio.take_partial()) == 0


async def test_24k_audio_arrives_at_16k() -> None:
    frames, audio = collect()
    audio.append(b64(np.zeros(24000, np.int16)), PCM24)
    await audio.feed()
    total = len(frames) * FRAME_SAMPLES + len(audio.take_partial())
    assert abs(total - 16000) < 64


@pytest.mark.parametrize(
    ("data", "code"),
    [
        ("%%%not base64%%%", "invalid_audio"),
        ("AAAA", "invalid_audio"),  # 3 bytes: not whole 16-bit samples
    ],
)
def test_bad_audio_is_refused_and_nothing_is_kept(data: str, code: str) -> None:
    _frames, audio = collect()
    with pytest.raises(CallControlError) as caught:
        audio.append(data, PCM24)
    assert caught.value.code == code and caught.value.param == "audio"
    assert not audio.waiting


def test_g711_bytes_are_whole_samples_whatever_their_count() -> None:
    _, audio = collect()
    audio.append(base64.b64encode(b"\xff\x7f\x00" * 401).decode(), WireFormat("ulaw", 8000))
    assert audio.waiting


def test_audio_faster_than_real_time_beyond_the_burst_is_refused() -> None:
    clock = Clock()
    audio = AppendedAudio(lambda f, end: None, burst_s=2.0, clock=clock)
    second = b64(np.zeros(24000, np.int16))
    audio.append(second, PCM24)
    audio.append(second, PCM24)  # two seconds at once: the burst allowance
    with pytest.raises(CallControlError) as caught:
        audio.append(second, PCM24)
    assert caught.value.code == "input_audio_rate_exceeded"
    clock.now += 1.0  # real time passes: one more second may come
    audio.append(second, PCM24)
    with pytest.raises(CallControlError):
        audio.append(second, PCM24)
    # A client streaming at real time is never refused.
    for _ in range(100):
        clock.now += 0.1
        audio.append(b64(np.zeros(2400, np.int16)), PCM24)


async def test_feeding_yields_to_the_loop() -> None:
    frames, audio = collect()
    ticks = 0

    async def other_call() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(other_call())
    await asyncio.sleep(0)
    audio.append(b64(np.zeros(5 * 16000, np.int16)), PCM16K)
    await audio.feed()
    task.cancel()
    assert len(frames) == 5 * 16000 // FRAME_SAMPLES
    assert ticks >= len(frames) // 4 - 1  # the other task ran between every few frames


def test_clear_forgets_what_was_not_yet_fed() -> None:
    _frames, audio = collect()
    audio.append(b64(np.zeros(16000, np.int16)), PCM16K)
    audio.clear()
    assert not audio.waiting and len(audio.take_partial()) == 0
