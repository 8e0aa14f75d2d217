"""The caller's language: session settings, which Whisper hears them, what the reply is
told, which voice speaks it, and the errors when none can.

The engines here are fakes named so: `FakeWhisper` returns a fixed transcript and records
the language it was asked for (or "detects" the one it was given), `FakeEnglishTTS` and
`FakeKokoro` yield tones at their rates. The real models are exercised by
tests/test_languages_e2e.py and tests/test_whisper_models.py.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import numpy as np
import pytest
from openai.types.realtime import ConversationItemInputAudioTranscriptionCompletedEvent

from media.vad import SileroModel
from server.call.language import CallLanguage, check_languages
from server.call.ports import CallControlError
from server.call.session import RealtimeSession
from server.engines.base import Engines, Transcript
from server.engines.chat import LLMRequest
from server.engines.language_tts import LanguageTTS
from server.engines.voices import VoiceError, check_voice
from server.protocol import events
from server.protocol.params import InvalidParam
from server.protocol.session_config import SessionConfig
from server.protocol.transcription import TranscriptionConfig, parse_transcription
from server.reply.spec import ReplySpec
from server.turns.timings import TurnTimings


class FakeWhisper:
    """Answers `text`; a multilingual fake reports the language asked, else `detects`."""

    name = "fake-whisper"

    def __init__(self, text: str, *, multilingual: bool, detects: str = "en") -> None:
        self.text = text
        self.multilingual = multilingual
        self.detects = detects
        self.asked: list[str | None] = []
        self.loads = 0

    async def load(self) -> None:
        self.loads += 1

    async def transcribe(self, audio: np.ndarray) -> str:
        return (await self.transcribe_detailed(audio)).text

    async def transcribe_detailed(
        self, audio: np.ndarray, language: str | None = None
    ) -> Transcript:
        self.asked.append(language)
        if not self.multilingual:
            return Transcript(self.text, 0.01, -0.2, 1.0, "en")
        found = language or self.detects
        return Transcript(
            self.text, 0.01, -0.2, 1.0, found, 0.9 if language is None else 1.0, language is None
        )


class FakeEnglishTTS:
    name = "fake-english"
    sample_rate = 16_000

    def __init__(self) -> None:
        self.voices: list[str | None] = []

    async def load(self) -> None:
        pass

    async def synthesize(
        self, text: str, voice: str | None = None, speed: float = 1.0
    ) -> AsyncIterator[np.ndarray]:
        self.voices.append(voice)
        yield np.full(1600, 1000, np.int16)


class FakeKokoro(FakeEnglishTTS):
    name = "fake-kokoro"
    sample_rate = 24_000

    def __init__(self) -> None:
        super().__init__()
        self.loads = 0

    async def load(self) -> None:
        self.loads += 1


class FakeNeverAskedLLM:
    name = "fake-never-asked"

    async def load(self) -> None:
        pass

    async def stream(self, request: LLMRequest) -> AsyncIterator[str]:
        raise AssertionError("no reply was expected")
        yield ""


def engines(multilingual: FakeWhisper | None, tts: object = None) -> Engines:
    english = FakeWhisper("hello", multilingual=False)
    return Engines(
        stt=english,
        llm=FakeNeverAskedLLM(),
        tts=tts or LanguageTTS(FakeEnglishTTS(), FakeKokoro(), preload=False),  # type: ignore[arg-type]
        multilingual_stt=multilingual,
    )  # type: ignore[arg-type]


def language_for(
    engines: Engines, config: SessionConfig
) -> tuple[CallLanguage, list[tuple[str, str]]]:
    reported: list[tuple[str, str]] = []

    def report(type_: str, code: str, message: str, *, param: str | None = None) -> None:
        reported.append((code, message))

    return CallLanguage(engines, lambda: config, report, "rtc_test"), reported


def spec(voice: str = "joe") -> ReplySpec:
    return ReplySpec(request=LLMRequest(instructions="Be brief.", history=()), voice=voice)


AUDIO = np.zeros(16_000, np.int16)

# ---- the session's transcription settings -------------------------------------------------


def test_transcription_names_map_to_models() -> None:
    assert not TranscriptionConfig().multilingual
    cases = {
        (None, None): ("whisper-tiny.en", None, False),
        (None, "es"): ("whisper-base", "es", True),
        (None, "EN"): ("whisper-tiny.en", "en", False),
        ("whisper-1", None): ("whisper-1", None, True),
        ("whisper-1", "en"): ("whisper-1", "en", False),
        ("gpt-4o-transcribe", "de"): ("gpt-4o-transcribe", "de", True),
        ("whisper-base", "en"): ("whisper-base", "en", True),
    }
    for (model, language), (name, lang, multilingual) in cases.items():
        raw = {k: v for k, v in (("model", model), ("language", language)) if v}
        parsed = parse_transcription(raw)
        assert (parsed.model, parsed.language, parsed.multilingual) == (name, lang, multilingual)
    assert parse_transcription(None) == TranscriptionConfig()


@pytest.mark.parametrize(
    ("raw", "param", "words"),
    [
        ({"model": "whisper-tiny.en", "language": "es"}, "language", "English only"),
        ({"language": "xx"}, "language", "ISO 639-1"),
        ({"language": 7}, "language", "ISO 639-1"),
        ({"model": "nova-3"}, "model", "whisper-base"),
        ("whisper-1", "transcription", "object"),
    ],
)
def test_bad_transcription_settings_are_refused(raw: object, param: str, words: str) -> None:
    with pytest.raises(InvalidParam, match=words) as caught:
        SessionConfig().apply({"audio": {"input": {"transcription": raw}}})
    assert caught.value.param.endswith(param)


def test_both_shapes_set_it_and_the_session_shows_it() -> None:
    ga = SessionConfig().apply({"audio": {"input": {"transcription": {"language": "es"}}}})
    beta = SessionConfig().apply({"input_audio_transcription": {"model": "whisper-1"}})
    shown = ga.to_dict("sess_x")["audio"]["input"]["transcription"]
    assert shown == {"model": "whisper-base", "language": "es"}
    assert beta.transcription == TranscriptionConfig("whisper-1", None)
    assert SessionConfig().to_dict("s")["audio"]["input"]["transcription"]["language"] is None


# ---- which Whisper hears the caller ----------------------------------------------------------


async def test_english_sessions_use_the_english_model() -> None:
    base = FakeWhisper("hola", multilingual=True)
    call, _ = language_for(engines(base), SessionConfig())
    heard = await call.stt.transcribe_detailed(AUDIO)
    assert heard.text == "hello" and base.asked == [] and base.loads == 0
    assert call.caller is None and call.adapt(spec()) == spec()


async def test_a_language_given_is_decoded_in_by_base() -> None:
    base = FakeWhisper("hola", multilingual=True)
    config = SessionConfig().apply({"audio": {"input": {"transcription": {"language": "es"}}}})
    call, _ = language_for(engines(base), config)
    heard = await call.stt.transcribe_detailed(AUDIO)
    assert (heard.text, heard.language, heard.detected) == ("hola", "es", False)
    assert base.asked == ["es"] and base.loads == 1  # loaded when first needed
    assert call.caller == "es"


async def test_without_a_language_base_detects_it_per_utterance() -> None:
    base = FakeWhisper("Guten Tag", multilingual=True, detects="de")
    config = SessionConfig().apply({"audio": {"input": {"transcription": {"model": "whisper-1"}}}})
    call, _ = language_for(engines(base), config)
    assert call.caller is None
    heard = await call.stt.transcribe_detailed(AUDIO)
    assert heard.detected and base.asked == [None] and call.caller == "de"
    base.detects = "fr"
    await call.stt.transcribe_detailed(AUDIO)
    assert call.caller == "fr"


def test_an_english_only_server_refuses_other_languages() -> None:
    config = SessionConfig().apply({"audio": {"input": {"transcription": {"language": "es"}}}})
    with pytest.raises(CallControlError, match="English only") as caught:
        check_languages(engines(None), config)
    assert caught.value.param == "session.audio.input.transcription"
    check_languages(engines(None), SessionConfig())  # English is fine
    check_languages(engines(FakeWhisper("", multilingual=True)), config)


# ---- the reply: its language and voice ------------------------------------------------------


def test_the_reply_is_told_the_language_and_gets_a_voice_that_speaks_it() -> None:
    config = SessionConfig().apply({"audio": {"input": {"transcription": {"language": "es"}}}})
    call, reported = language_for(engines(FakeWhisper("", multilingual=True)), config)
    adapted = call.adapt(spec("joe"))
    assert adapted.voice == "es-alpha"
    assert adapted.request.instructions.startswith("Be brief.\n\n")
    assert "Always reply in Spanish" in adapted.request.instructions
    assert call.adapt(spec("de-kumo")).voice == "es-kumo"  # the timbre kept
    assert call.adapt(spec("es-nezumi")).voice == "es-nezumi"
    assert not reported


def test_a_language_voice_alone_sets_the_reply_language() -> None:
    call, _ = language_for(engines(FakeWhisper("", multilingual=True)), SessionConfig())
    adapted = call.adapt(spec("zh-alpha"))
    assert adapted.voice == "zh-alpha" and "reply in Chinese" in adapted.request.instructions


async def test_a_detected_english_caller_gets_the_english_voice() -> None:
    base = FakeWhisper("hi", multilingual=True, detects="en")
    config = SessionConfig().apply({"audio": {"input": {"transcription": {"model": "whisper-1"}}}})
    call, _ = language_for(engines(base), config)
    await call.stt.transcribe_detailed(AUDIO)
    adapted = call.adapt(spec("es-alpha"))
    assert adapted.voice == "joe" and adapted.request.instructions == "Be brief."


def test_a_language_no_voice_speaks_is_one_clear_error() -> None:
    config = SessionConfig().apply({"audio": {"input": {"transcription": {"language": "ru"}}}})
    call, reported = language_for(engines(FakeWhisper("", multilingual=True)), config)
    first, second = call.adapt(spec()), call.adapt(spec())
    assert first.voice == second.voice == "joe"
    assert "language with ISO 639-1 code 'ru'" in first.request.instructions
    assert len(reported) == 1 and reported[0][0] == "language_not_spoken"
    assert "es, de, fr, pt, it, zh" in reported[0][1]


def test_an_english_only_tts_reports_it_cannot_speak_the_language() -> None:
    config = SessionConfig().apply({"audio": {"input": {"transcription": {"language": "de"}}}})
    plain = engines(FakeWhisper("", multilingual=True), tts=FakeEnglishTTS())
    call, reported = language_for(plain, config)
    assert call.adapt(spec()).voice == "joe"
    assert reported and "speaks English only" in reported[0][1]


# ---- voices ----------------------------------------------------------------------------------


def test_voice_selection_errors() -> None:
    multilingual = LanguageTTS(FakeEnglishTTS(), FakeKokoro(), preload=False)  # type: ignore[arg-type]
    check_voice(multilingual, "es-alpha")
    check_voice(multilingual, "alloy")  # an OpenAI name: the English voice
    with pytest.raises(VoiceError, match="ru-alpha") as caught:
        check_voice(multilingual, "ru-alpha")
    assert caught.value.code == "voice_not_found"
    with pytest.raises(VoiceError, match="English only") as caught:
        check_voice(FakeEnglishTTS(), "es-alpha")
    assert caught.value.code == "voice_not_supported"


async def test_language_voices_go_to_kokoro_at_the_english_rate() -> None:
    english, kokoro = FakeEnglishTTS(), FakeKokoro()
    tts = LanguageTTS(english, kokoro, preload=False)  # type: ignore[arg-type]
    await tts.load()
    assert kokoro.loads == 0  # lazily: nobody asked for a language voice yet
    spoken = [c async for c in tts.synthesize("Hola.", "es-alpha")]
    said = np.concatenate(spoken)
    assert kokoro.voices == ["es-alpha"] and kokoro.loads == 1
    assert abs(said.size - 1600 * 16_000 // 24_000) <= 64  # 100 ms at 24 kHz, now at 16 kHz
    [chunk async for chunk in tts.synthesize("Hello.", "joe")]
    assert english.voices == ["joe"] and tts.sample_rate == 16_000


# ---- the session: events on the wire ---------------------------------------------------------


def test_a_detected_language_is_reported_in_openais_shape() -> None:
    event = events.transcription_completed("item_1", "Hola.", 1.2, "es")
    parsed = ConversationItemInputAudioTranscriptionCompletedEvent.model_validate(event)
    assert parsed.languages is not None and parsed.languages[0].code == "es"
    assert "languages" not in events.transcription_completed("item_1", "Hi.", 1.0)


async def test_a_session_update_asking_what_it_cannot_hear_is_refused() -> None:
    session = RealtimeSession(
        "rtc_test", engines(None), SileroModel.load(), SessionConfig(), max_event_bytes=65536,
        ice_timeout_s=30, on_closed=lambda _: None, append_burst_s=20.0,
    )  # fmt: skip
    try:
        with pytest.raises(CallControlError, match="English only"):
            session.update_session({"audio": {"input": {"transcription": {"language": "de"}}}})
        assert session.config.transcription == TranscriptionConfig()
    finally:
        await session.close()


async def test_a_detected_language_reaches_the_completed_event() -> None:
    base = FakeWhisper("Bonjour.", multilingual=True, detects="fr")
    config = SessionConfig().apply(
        {"type": "transcription", "audio": {"input": {"transcription": {"model": "whisper-1"}}}}
    )
    session = RealtimeSession(
        "rtc_test", engines(base), SileroModel.load(), config, max_event_bytes=65536,
        ice_timeout_s=30, on_closed=lambda _: None, append_burst_s=20.0,
    )  # fmt: skip
    try:
        session.user_turns._commit("item_turn", AUDIO, TurnTimings(), False, None, False)
        for task in session.tasks.named("turn"):
            await task
        sent = [json.loads(raw) for raw in session.transport._pending]
        done = [e for e in sent if e["type"].endswith("input_audio_transcription.completed")]
        assert done and done[0]["transcript"] == "Bonjour."
        assert done[0]["languages"] == [{"code": "fr"}]
    finally:
        await session.close()
