"""Voice profiles: reference clips made uniform from real files (WAV and Ogg), bad
uploads refused with a reason, and the store on real databases returning exactly what a
cloning TTS speaks with (mono PCM, its rate, its words)."""

from __future__ import annotations

import io

import av
import numpy as np
import pytest

from media.voice_sample import RATE, VoiceSampleError, prepare
from server.errors import NotFound
from server.store.voices import VoiceStore
from tests.speech import silence, speak, write_wav
from tests.store_fixtures import fresh_database

SENTENCE = "The quick brown fox jumps over the lazy dog near the river bank."


def wav_bytes(pcm: np.ndarray, rate: int, tmp_path, name: str = "clip.wav") -> bytes:
    path = tmp_path / name
    write_wav(path, pcm, rate)
    return path.read_bytes()


def ogg_bytes(pcm: np.ndarray, rate: int) -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="ogg") as container:
        stream = container.add_stream("libopus", rate=48000, layout="mono")
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = rate
        frame.pts = 0
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buffer.getvalue()


def rms_dbfs(pcm: np.ndarray) -> float:
    return 20 * np.log10(np.sqrt(np.mean((pcm / 32768.0) ** 2)))


def test_a_quiet_padded_recording_becomes_a_uniform_reference(tmp_path):
    voice = (speak(SENTENCE, 48000) * 0.05).astype(np.int16)  # a quiet microphone
    padded = np.concatenate([silence(1500, 48000), voice, silence(2000, 48000)])
    clip = prepare(wav_bytes(padded, 48000, tmp_path))
    assert clip.dtype == np.int16 and clip.ndim == 1
    seconds = len(clip) / RATE
    spoken = len(voice) / 48000
    assert spoken - 0.3 < seconds < spoken + 0.5  # ~3.5 s of silence trimmed
    assert np.abs(clip).max() <= 32767 * 10 ** (-1 / 20) + 2  # peaks under -1 dBFS
    assert rms_dbfs(clip) > rms_dbfs(voice) + 10  # brought up towards -20 dBFS


def test_ogg_and_stereo_wav_are_read(tmp_path):
    voice = np.concatenate([speak(SENTENCE, 48000), silence(300, 48000)])
    from_ogg = prepare(ogg_bytes(voice, 48000))
    stereo = np.stack([voice, voice], axis=1)
    path = tmp_path / "stereo.wav"
    with av.open(str(path), "w", format="wav") as container:
        stream = container.add_stream("pcm_s16le", rate=48000, layout="stereo")
        frame = av.AudioFrame.from_ndarray(stereo.reshape(1, -1), format="s16", layout="stereo")
        frame.sample_rate = 48000
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    from_wav = prepare(path.read_bytes())
    assert abs(len(from_ogg) - len(from_wav)) < RATE * 0.2


@pytest.mark.parametrize(
    "case, message",
    [
        ("text", "not audio"),
        ("short", "lasts"),
        ("long", "over 15 s"),
        ("silent", "silent"),
        ("mp3-like", "not audio"),
    ],
)
def test_bad_uploads_say_why(case, message, tmp_path):
    voice = speak(SENTENCE, 48000)
    data = {
        "text": b"hello, I am definitely a wav file",
        "short": wav_bytes(voice[: 48000 * 2], 48000, tmp_path),
        "long": wav_bytes(np.tile(voice, 5), 48000, tmp_path),
        "silent": wav_bytes(silence(5000, 48000), 48000, tmp_path),
        "mp3-like": b"ID3" + bytes(2000),
    }[case]
    with pytest.raises(VoiceSampleError, match=message):
        prepare(data)


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def pg(backend: str, request: pytest.FixtureRequest) -> str | None:
    return request.getfixturevalue("postgres_url") if backend == "postgresql" else None


async def test_the_store_gives_a_tts_exactly_what_it_speaks_with(backend, pg, tmp_path):
    clip = prepare(wav_bytes(speak(SENTENCE, 48000), 48000, tmp_path))
    async with fresh_database(backend, tmp_path, pg) as db:
        store = VoiceStore(db)
        record = await store.create("key:a", "Me", clip, RATE, SENTENCE)
        assert record.id.startswith("voice_") and record.duration_ms == len(clip) * 1000 // RATE
        reference = await store.resolve("key:a", record.id)
        assert reference is not None and reference.sample_rate == RATE
        assert reference.text == SENTENCE and np.array_equal(reference.pcm, clip)
        assert await store.resolve("key:b", record.id) is None
        assert await store.resolve("key:a", "voice_" + "0" * 20) is None
        assert [v.id for v in await store.list("key:a")] == [record.id]
        assert await store.list("key:b") == []
        with pytest.raises(NotFound):
            await store.delete("key:b", record.id)
        await store.delete("key:a", record.id)
        assert await store.resolve("key:a", record.id) is None
