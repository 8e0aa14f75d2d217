"""A caller in Spanish (and one in Chinese) against a real server, over OpenAI's SDK.

Everything is real but the words of the reply: turn taking, Whisper base for the
caller's language, the reply run, Kokoro's Spanish voice, the WebSocket. The embedded
270M model's Spanish is too weak to test a voice path on, so the server's LLM is
`FakeScriptedChatServer` (tests/scripted_llm.py), a fake that always answers one
sentence and keeps what it was told, so the test also sees the language instruction.
The Spanish question is spoken by espeak-ng (the Chinese one by Kokoro); the reply's
audio is transcribed back by Whisper base with no language given, which must detect
Spanish.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp
import numpy as np
import pytest

from media.resample import Resampler
from server.engines.faster_whisper_stt import FasterWhisperSTT
from server.engines.kokoro_tts import KokoroTTS
from tests.scripted_llm import FakeScriptedChatServer
from tests.server_process import ServerProcess, running_server
from tests.speech import espeak, silence
from tests.ws_client import SdkCall, rms

pytestmark = pytest.mark.slow

RATE = 24_000
REPLY = "La estación de tren está a dos calles de aquí, al lado del mercado."


@pytest.fixture(scope="module")
def scripted() -> FakeScriptedChatServer:
    with FakeScriptedChatServer(REPLY) as fake:
        yield fake


@pytest.fixture(scope="module")
def hark_es(scripted: FakeScriptedChatServer):
    env = {"HARK_LLM": "openai", "HARK_LLM_BASE_URL": scripted.url}
    with running_server(env) as server:
        yield server


@pytest.fixture(scope="module")
async def whisper_base(tmp_path_factory: pytest.TempPathFactory) -> FasterWhisperSTT:
    stt = FasterWhisperSTT(model="base", cache_dir=Path(tmp_path_factory.mktemp("whisper")))
    await stt.load()
    return stt


def spoken(text: str, voice: str) -> np.ndarray:
    return np.concatenate([silence(300, RATE), espeak(text, voice, RATE), silence(200, RATE)])


def to_16k(pcm: np.ndarray) -> np.ndarray:
    resampler = Resampler(16_000)
    return np.concatenate([resampler.pcm(pcm, RATE), resampler.flush()])


async def test_a_spanish_session_hears_spanish_and_answers_in_a_spanish_voice(
    hark_es: ServerProcess, scripted: FakeScriptedChatServer, whisper_base: FasterWhisperSTT
) -> None:
    call = SdkCall(hark_es.url, hark_es.api_key)
    await call.connect()
    try:
        mark = len(call.events)
        spanish = {"transcription": {"model": "whisper-base", "language": "es"}}
        await call.send(
            {
                "type": "session.update",
                "session": {
                    "type": "realtime",
                    "audio": {"input": spanish, "output": {"voice": "es-alpha"}},
                },
            }
        )
        updated = await call.wait_for("session.updated", after=mark)
        audio = updated.data["session"]["audio"]
        assert audio["input"]["transcription"] == {"model": "whisper-base", "language": "es"}
        assert audio["output"]["voice"] == "es-alpha"

        mark = len(call.events)
        call.say(spoken("Perdone, ¿dónde está la estación de tren?", "es"))
        heard = await call.wait_for(
            "conversation.item.input_audio_transcription.completed", after=mark, timeout=120
        )
        assert heard.parsed_as == "ConversationItemInputAudioTranscriptionCompletedEvent"
        assert "estación" in heard.data["transcript"].lower(), heard.data
        assert "languages" not in heard.data  # asked for, not detected

        done = await call.wait_for("response.done", after=mark, timeout=180)
        response = done.data["response"]
        assert response["status"] == "completed", response
        assert response["output"][0]["content"][0]["transcript"].strip() == REPLY
        answer = call.audio.of(response["id"])
        assert rms(answer) > 500 and len(answer) / RATE > 2.0
    finally:
        await call.close()

    assert any("Always reply in Spanish" in p for p in scripted.system_prompts())
    back = await whisper_base.transcribe_detailed(to_16k(answer))
    assert back.language == "es" and back.detected, back
    words = set(back.text.lower().replace(",", " ").replace(".", " ").split())
    assert {"estación", "tren", "calles"} & words, back.text


async def test_without_a_language_the_callers_is_detected_and_reported(
    hark_es: ServerProcess, tmp_path: Path
) -> None:
    # Whisper base takes espeak-ng's robotic voices for Thai or Latin when it must guess
    # (tests/bench/stt_languages.py), so this caller is Kokoro reading Chinese.
    kokoro = KokoroTTS(cache_dir=tmp_path)
    await kokoro.load()
    question = np.concatenate([c async for c in kokoro.synthesize("请问火车站在哪里？", "zh-kumo")])
    call = SdkCall(hark_es.url, hark_es.api_key)
    await call.connect()
    try:
        mark = len(call.events)
        detect = {"transcription": {"model": "whisper-1"}}
        await call.send({"type": "session.update", "session": {"audio": {"input": detect}}})
        await call.wait_for("session.updated", after=mark)
        mark = len(call.events)
        call.say(np.concatenate([silence(300, RATE), question, silence(200, RATE)]))
        heard = await call.wait_for(
            "conversation.item.input_audio_transcription.completed", after=mark, timeout=120
        )
        assert heard.data["languages"] == [{"code": "zh"}], heard.data
        assert "站" in heard.data["transcript"], heard.data
        done = await call.wait_for("response.done", after=mark, timeout=180)
        assert done.data["response"]["status"] == "completed"
        # The reply's voice followed the caller from Piper's English one to Kokoro's.
        assert done.data["response"]["audio"]["output"]["voice"] == "zh-alpha"
    finally:
        await call.close()


async def test_the_voices_endpoint_lists_each_voice_with_its_language(
    hark_es: ServerProcess,
) -> None:
    headers = {"Authorization": f"Bearer {hark_es.api_key}"}
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{hark_es.url}/v1/voices", headers=headers) as resp,
    ):
        assert resp.status == 200
        voices = {v["id"]: v["language"] for v in (await resp.json())["data"]}
    assert voices["joe"] == "en" and voices["es-alpha"] == "es" and voices["zh-kumo"] == "zh"
    assert {"de-alpha", "fr-alpha", "pt-alpha", "it-alpha"} <= set(voices)
