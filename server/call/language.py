"""The caller's language in one call: which Whisper hears them, what the reply is told,
and which voice says it.

The session's `audio.input.transcription` picks the model (`server.protocol.
transcription`): tiny.en for English, Whisper base for a language given, or for any
language detected per utterance. The reply then follows the caller: the LLM is told to
answer in the language (asked, or the last one detected), and the voice becomes a voice
that speaks it. A Kokoro voice the session chose keeps its timbre in the caller's
language; Piper's English voice gives way to Kokoro's default timbre. A language no
voice speaks gets one `error` event per call, and the reply is spoken by the session's
voice anyway (its text is still right).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

import numpy as np

from server.call.ports import CallControlError
from server.call.voice import CallVoice
from server.engines.base import Engines, SpeechToText, Transcript
from server.engines.language_voices import LANGUAGES, parse_voice, spoken_codes, voice_for
from server.protocol.session_config import SessionConfig
from server.protocol.transcription import PARAM
from server.reply.spec import ReplySpec

log = logging.getLogger("hark.session")

ENGLISH_VOICE = SessionConfig().voice


def language_name(code: str) -> str:
    spoken = LANGUAGES.get(code)
    if spoken is not None:
        return spoken.name
    return "English" if code == "en" else f"the language with ISO 639-1 code {code!r}"


def reply_instruction(code: str) -> str:
    name = language_name(code)
    return f"The caller speaks {name}. Always reply in {name}, whatever language the above is in."


def check_languages(engines: Engines, config: SessionConfig) -> None:
    """Refuse a session that needs another language on an English-only server."""
    if config.transcription.multilingual and multilingual_engine(engines) is None:
        raise CallControlError(
            "invalid_value",
            f"This server hears English only (HARK_MULTILINGUAL=off), so it cannot use "
            f"{config.transcription.model} for {config.transcription.language or 'any language'}",
            PARAM,
        )


def check_update(
    current: SessionConfig, updated: SessionConfig, engines: Engines, voice: CallVoice
) -> None:
    """What a `session.update` may not do: change what was settled when the call began,
    ask for a language this server cannot hear, or a voice this call cannot speak
    (raises `CallControlError`, or `SessionConfigError` for the settled fields)."""
    current.check_fixed(updated)
    check_languages(engines, updated)
    voice.change(current.voice, updated.voice)


def multilingual_engine(engines: Engines) -> SpeechToText | None:
    """The Whisper that hears other languages: the main one if it can, else base."""
    if getattr(engines.stt, "multilingual", False):
        return engines.stt
    return engines.multilingual_stt


class CallLanguage:
    def __init__(
        self,
        engines: Engines,
        config: Callable[[], SessionConfig],
        report: Callable[..., None],
        call_id: str,
    ) -> None:
        """`config()`: the session's settings now; `report(type, code, message,
        param=…)`: an `error` event to the client."""
        self._engines = engines
        self._config = config
        self._report = report
        self._call_id = call_id
        self.heard: str | None = None  # the language of the last turn Whisper detected
        self._unspoken: set[str] = set()
        self.stt: SpeechToText = _SessionSTT(self)

    @property
    def caller(self) -> str | None:
        """The caller's language: as the session set it, else the last one detected;
        None on the English model."""
        transcription = self._config().transcription
        if not transcription.multilingual:
            return None
        return transcription.language or self.heard

    async def transcribe(self, audio: np.ndarray) -> Transcript:
        transcription = self._config().transcription
        if not transcription.multilingual:
            return await self._engines.stt.transcribe_detailed(audio)
        engine = multilingual_engine(self._engines)
        if engine is None:  # refused at session.update; the English model as a last resort
            return await self._engines.stt.transcribe_detailed(audio)
        await engine.load()  # at once when loaded; the first call that needs base waits
        heard = await engine.transcribe_detailed(audio, transcription.language)
        if heard.detected and heard.has_words:
            if heard.language != self.heard:
                log.info(
                    "call %s: the caller speaks %s (p=%.2f)",
                    self._call_id,
                    heard.language,
                    heard.language_probability,
                )
            self.heard = heard.language
        return heard

    def adapt(self, spec: ReplySpec) -> ReplySpec:
        """`spec` answering in the caller's language, with a voice that speaks it."""
        chosen = parse_voice(spec.voice)
        language = self.caller or (chosen.language.code if chosen else None)
        if language is None:
            return spec
        voice = self._voice_for(language, spec.voice)
        request = spec.request
        if language != "en":
            instructions = "\n\n".join(
                filter(None, (request.instructions, reply_instruction(language)))
            )
            request = dataclasses.replace(request, instructions=instructions)
        return dataclasses.replace(spec, request=request, voice=voice)

    def _voice_for(self, language: str, voice: str) -> str:
        chosen = parse_voice(voice)
        if language == "en":
            return ENGLISH_VOICE if chosen else voice
        if chosen is not None and chosen.language.code == language:
            return voice
        if not getattr(self._engines.tts, "speaks_languages", False):
            self._unspoken_language(language, "this server's TTS speaks English only")
            return voice
        other = voice_for(language, chosen.timbre) if chosen else voice_for(language)
        if other is None:
            self._unspoken_language(language, f"voices speak {spoken_codes()}")
            return voice
        return other.id

    def _unspoken_language(self, language: str, why: str) -> None:
        if language in self._unspoken:
            return
        self._unspoken.add(language)
        self._report(
            "invalid_request_error",
            "language_not_spoken",
            f"No voice speaks {language_name(language)} ({why}); replies are written in "
            f"{language_name(language)} and spoken by the session's voice",
            param="session.audio.output.voice",
        )


class _SessionSTT:
    """The call's speech-to-text as turn taking sees it: routed by the session's
    transcription settings."""

    def __init__(self, language: CallLanguage) -> None:
        self._language = language
        self.name = language._engines.stt.name

    async def load(self) -> None:
        return None

    async def transcribe(self, audio: np.ndarray) -> str:
        return (await self._language.transcribe(audio)).text

    async def transcribe_detailed(
        self, audio: np.ndarray, language: str | None = None
    ) -> Transcript:
        return await self._language.transcribe(audio)
