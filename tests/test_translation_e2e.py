"""The Realtime Translation API with OpenAI's own Python SDK against a real server.

`client.realtime.translations.client_secrets.create()` mints a translation secret and
`client.realtime.translations.connect()` opens the WebSocket; source speech is espeak-ng
in the source language, streamed in 200 ms appends at real-time pace. What comes back is
checked as a listener would: the translated speech is transcribed again by multilingual
Whisper base in this process, which must hear the target language. Also: English ↔
Portuguese (Marian), a refused pair, bad audio, the secrets' scopes, WebRTC, the
operator's view.
"""

from __future__ import annotations

import functools

import aiohttp
import numpy as np
import openai
import pytest
from openai import AsyncOpenAI

from media.resample import Resampler
from server.tools.call_client import CallClient, mint_client_secret
from tests.server_process import free_port, running_server, stop_process
from tests.translation_client import RATE, SdkTranslation, espeak, wait_for_translation
from tests.ws_client import rms

pytestmark = pytest.mark.slow

MAX_EVENT_BYTES = 64 * 1024
TRANSCRIBED = {"transcription": {"model": "whisper-1"}}


@pytest.fixture(scope="module")
def server():
    env = {"HARK_JWT_SECRET": "test-signing-secret-0123456789abcdef", "HARK_TRANSLATION": "1"}
    env["HARK_MAX_EVENT_BYTES"] = str(MAX_EVENT_BYTES)
    with running_server(env) as hark:
        wait_for_translation(hark.url)
        yield hark


@functools.cache
def _whisper():
    from faster_whisper import WhisperModel

    from server.engines.whisper_models import whisper_model_dir

    return WhisperModel(str(whisper_model_dir("base")), device="cpu", compute_type="int8")


def listen(pcm: np.ndarray, rate: int = RATE, language: str | None = None) -> tuple[str, str]:
    """(language, text) Whisper base hears in `pcm`: the listener's check. `language`:
    a listener who knows the language (Whisper base takes espeak-ng's Portuguese for
    Spanish, and Kokoro's, in its Japanese timbres, for Japanese when left to guess, yet
    writes its words down when told)."""
    resampler = Resampler(16_000)
    audio = np.concatenate([resampler.pcm(pcm, rate), resampler.flush()])
    samples = audio.astype(np.float32) / 32768.0
    segments, info = _whisper().transcribe(samples, beam_size=3, language=language)
    return info.language, " ".join(s.text.strip() for s in segments)


def talk(*sentences: np.ndarray, pause_ms: int = 1000, tail_ms: int = 1500) -> np.ndarray:
    """Sentences with pauses between them, then the silence a live microphone sends."""
    gap = np.zeros(RATE * pause_ms // 1000, np.int16)
    parts = [np.zeros(RATE // 2, np.int16)]
    for sentence in sentences:
        parts += [sentence, gap]
    parts.append(np.zeros(RATE * tail_ms // 1000, np.int16))
    return np.concatenate(parts)


async def secret(server, session: dict) -> str:
    client = AsyncOpenAI(api_key=server.api_key, base_url=server.url + "/v1")
    try:
        created = await client.realtime.translations.client_secrets.create(session=session)
    finally:
        await client.close()
    assert created.session.type == "translation"
    return created.value


async def test_spanish_speech_is_interpreted_into_english_while_the_speaker_goes_on(server):
    token = await secret(
        server,
        {
            "model": "gpt-realtime-translate",
            "audio": {"input": TRANSCRIBED, "output": {"language": "en"}},
        },
    )
    t = SdkTranslation(server.url, token)
    await t.connect()
    try:
        created = t.events[0]
        assert created.parsed_as == "RealtimeTranslationSessionCreatedEvent"
        assert created.data["session"]["audio"]["output"]["language"] == "en"
        first = espeak("¿Dónde está la estación de tren?", "es")
        second = espeak("Quiero comprar un billete para Madrid, por favor.", "es")
        sent_all_at = await t.stream(talk(first, second))
        await t.close()
    finally:
        await t.disconnect()
    source = t.text("session.input_transcript.delta").lower()
    english = t.text("session.output_transcript.delta").lower()
    assert "estación" in source or "estacion" in source, source
    assert "station" in english, english
    assert "buy" in english or "please" in english, english
    assert all(e.parsed_as.startswith("RealtimeTranslation") or e.type == "error" for e in t.events)
    assert not t.of("error"), t.of("error")
    # Two segments, in order, aligned with the input on 200 ms frames.
    elapsed = [e.data["elapsed_ms"] for e in t.of("session.output_transcript.delta")]
    assert len(elapsed) >= 2 and elapsed == sorted(elapsed) and elapsed[0] % 200 == 0, elapsed
    # The first sentence was translated before the speaker finished the second.
    first_text = t.of("session.output_transcript.delta")[0]
    assert first_text.at < sent_all_at, "the first sentence waited for the whole talk"
    deltas = t.of("session.output_audio.delta")
    assert deltas and {(d.data["sample_rate"], d.data["channels"]) for d in deltas} == {(RATE, 1)}
    audio = t.audio()
    assert rms(audio) > 300
    language, heard = listen(audio)
    assert language == "en" and "station" in heard.lower(), (language, heard)
    assert t.of("session.closed")


@pytest.mark.parametrize(
    ("source", "target", "sentence", "expected"),
    [
        ("en", "pt", "Where is the train station?", ("estação", "trem")),
        ("pt", "en", "Obrigado, boa noite. Eu quero uma água, por favor.", ("thank", "water")),
    ],
)
async def test_english_and_portuguese_both_ways(server, source, target, sentence, expected):
    """The speaker's language is named (`transcription.language`): Whisper base takes
    espeak-ng's Portuguese for Spanish when it has to guess."""
    t = SdkTranslation(server.url, server.api_key)
    await t.connect()
    try:
        transcription = {"model": "whisper-1", "language": source}
        audio = {"input": {"transcription": transcription}, "output": {"language": target}}
        await t.update({"audio": audio})
        updated = await t.wait_for("session.updated")
        assert updated.data["session"]["audio"]["output"]["language"] == target
        await t.stream(talk(espeak(sentence, source)))
        await t.close()
    finally:
        await t.disconnect()
    assert not t.of("error"), t.of("error")
    text = t.text("session.output_transcript.delta").lower()
    assert any(word in text for word in expected), text
    assert t.of("session.input_transcript.delta")
    heard_in = listen(t.audio(), language=target)[1].lower()
    assert any(word in heard_in for word in expected), heard_in
    if target == "en":
        assert listen(t.audio())[0] == "en"


async def test_a_pair_hark_cannot_translate_is_refused_naming_the_pairs(server):
    t = SdkTranslation(server.url, server.api_key)
    await t.connect()
    try:
        await t.update({"audio": {"output": {"language": "de"}}})
        error = (await t.wait_for("error")).data["error"]
        assert error["code"] == "unsupported_language_pair"
        assert "en → pt" in error["message"] and "→ en" in error["message"], error
        # Still alive, still translating into English.
        mark = len(t.events)
        await t.update({"audio": {"output": {"language": "pt-BR"}}})
        updated = await t.wait_for("session.updated", after=mark)
        assert updated.data["session"]["audio"]["output"]["language"] == "pt-BR"
    finally:
        await t.disconnect()
    client = AsyncOpenAI(api_key=server.api_key, base_url=server.url + "/v1")
    try:
        with pytest.raises(openai.BadRequestError) as refused:
            await client.realtime.translations.client_secrets.create(
                session={"model": "gpt-realtime-translate", "audio": {"output": {"language": "de"}}}
            )
    finally:
        await client.close()
    assert refused.value.code == "unsupported_language_pair"


async def test_bad_audio_gets_an_error_and_the_session_lives_on(server):
    t = SdkTranslation(server.url, server.api_key)
    await t.connect()
    try:
        await t.update({"audio": {"input": {"format": {"type": "audio/pcmu"}}}})
        assert (await t.wait_for("error")).data["error"]["param"] == "session.audio.input.format"
        mark = len(t.events)
        await t.connection.session.input_audio_buffer.append(audio="AAE=AA")  # not base64
        assert (await t.wait_for("error", after=mark)).data["error"]["code"] == "invalid_audio"
        mark = len(t.events)
        await t.connection.session.input_audio_buffer.append(audio="AAAA")  # 3 bytes: odd
        assert (await t.wait_for("error", after=mark)).data["error"]["code"] == "invalid_audio"
        mark = len(t.events)
        await t.append(np.zeros(MAX_EVENT_BYTES, np.int16))  # 128 KiB in one append
        assert (await t.wait_for("error", after=mark)).data["error"]["code"] == "event_too_large"
        mark = len(t.events)
        await t.update({"audio": {"output": {"language": "en"}}})
        await t.wait_for("session.updated", after=mark)
        await t.stream(talk(espeak("Good morning, everyone.", "en")))
        await t.wait_for("session.output_transcript.delta", after=mark)
    finally:
        await t.disconnect()


async def test_secrets_are_scoped_to_their_api(server):
    translation = await secret(server, {"model": "gpt-realtime-translate"})
    client = AsyncOpenAI(api_key=translation, base_url=server.url + "/v1")
    try:
        with pytest.raises(Exception) as refused:
            async with client.realtime.connect(model="hark") as connection:
                await connection.recv()
        assert "401" in str(refused.value), refused.value
    finally:
        await client.close()
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{server.url}/v1/realtime/calls",
            data="v=0\r\n",
            headers={"Authorization": f"Bearer {translation}", "Content-Type": "application/sdp"},
        ) as response:
            assert response.status == 401
            assert "not a realtime client secret" in (await response.json())["error"]["message"]
    realtime = await mint_client_secret(server.url, server.api_key)
    t = SdkTranslation(server.url, realtime)
    with pytest.raises(Exception) as refused:
        await t.connect()
    await t.disconnect()
    assert "401" in str(refused.value), refused.value


async def test_webrtc_translation_call_and_the_operator_view(server):
    token = await secret(
        server,
        {
            "model": "gpt-realtime-translate",
            "audio": {"input": TRANSCRIBED, "output": {"language": "en"}},
        },
    )
    call = CallClient(server.url, token, calls_path="/v1/realtime/translations/calls")
    await call.connect()
    try:
        created = call.events[0]
        assert created.data["session"]["type"] == "translation"
        speech = espeak("¿Dónde está la estación de tren?", "es", rate=48_000)
        await call.say(np.concatenate([speech, np.zeros(48_000, np.int16)]), 48_000)
        done = await call.wait_for("session.output_transcript.delta", timeout=60)
        assert "station" in done.data["delta"].lower(), done.data
        await call.finish_saying()
        mark = len(call.recorder.audio())
        call.send({"type": "session.close"})
        await call.wait_for("session.closed", timeout=60)
        audio = call.recorder.audio()
        assert rms(audio[mark:] if len(audio) > mark else audio) > 0
        language, heard = listen(audio, 48_000)
        assert language == "en" and "station" in heard.lower(), (language, heard)
    finally:
        await call.close()
    async with aiohttp.ClientSession() as http:
        headers = {"Authorization": f"Bearer {server.admin_key}"}
        async with http.get(f"{server.url}/v1/operator/translations", headers=headers) as r:
            rows = (await r.json())["data"]
        row = next(row for row in rows if row["transport"] == "webrtc")
        assert row["output_language"] == "en" and row["source_languages"] == ["es"], row
        async with http.get(
            f"{server.url}/v1/operator/translations/{row['id']}", headers=headers
        ) as r:
            segments = (await r.json())["segments"]
        assert segments and all(
            s["latency_ms"] is not None and s["latency_ms"] > 0 for s in segments
        )
        async with http.get(
            f"{server.url}/v1/operator/translations",
            headers={"Authorization": f"Bearer {server.api_key}"},
        ) as r:
            assert r.status == 403


async def test_a_pair_no_packaged_translator_covers_goes_through_the_llm(tmp_path):
    """English → German through the configured OpenAI-compatible LLM: llama.cpp's own
    server on the packaged Gemma 270M *base* model, whose German is poor; what is checked
    is the route (accepted, asked, spoken by espeak-ng's German voice), not the German."""
    from tests.llama_server import start_llama_server

    port, log = free_port(), tmp_path / "llama.log"
    llm = start_llama_server(port, log)
    try:
        env = {"HARK_LLM_BASE_URL": f"http://127.0.0.1:{port}/v1", "HARK_TRANSLATION": "1"}
        with running_server(env) as hark:
            health = wait_for_translation(hark.url)
            assert "any source → any target" in health["translation"], health
            t = SdkTranslation(hark.url, hark.api_key)
            await t.connect()
            try:
                await t.update({"audio": {"input": TRANSCRIBED, "output": {"language": "de"}}})
                await t.wait_for("session.updated")
                await t.stream(talk(espeak("Good morning, where is the train station?", "en")))
                await t.close()
            finally:
                await t.disconnect()
    finally:
        stop_process(llm)
    errors = [e.data["error"] for e in t.of("error")]
    assert not errors, errors
    assert "station" in t.text("session.input_transcript.delta").lower()
    assert t.text("session.output_transcript.delta").strip()
    assert rms(t.audio()) > 300
    assert "/v1/chat/completions" in log.read_text(errors="replace")


async def test_wrong_translation_offers_are_refused_with_openai_errors(server):
    url = f"{server.url}/v1/realtime/translations/calls"
    auth = {"Authorization": f"Bearer {server.api_key}"}
    async with aiohttp.ClientSession() as http:

        async def refused(headers: dict | None = None, **kwargs) -> tuple[int, str]:
            async with http.post(url, headers=headers or auth, **kwargs) as response:
                return response.status, (await response.json())["error"]["code"]

        assert await refused(json={"sdp": "v=0"}) == (415, "unsupported_media_type")
        assert (await refused(data="not sdp", headers={**auth, "Content-Type": "application/sdp"}))[
            0
        ] == 400
        form = aiohttp.FormData()
        form.add_field("session", "{}")
        assert await refused(data=form) == (400, "missing_sdp")
        form = aiohttp.FormData()
        form.add_field("sdp", "v=0\r\n")
        form.add_field("session", "[1]")
        assert (await refused(data=form))[0] == 400
        async with http.delete(f"{url}/sess_nope", headers=auth) as response:
            assert response.status == 404
