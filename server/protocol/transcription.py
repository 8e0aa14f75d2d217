"""`audio.input.transcription`: which Whisper hears the caller, and in what language.

Hark keeps Whisper tiny.en as the fast default for English. The names a session may
give, and the model each one gets:
- `whisper-tiny.en` (the default): tiny.en, English only.
- `whisper-base`: Whisper base, 99 languages.
- OpenAI's names (`whisper-1`, `gpt-4o-transcribe`, `gpt-4o-mini-transcribe`, …): Whisper
  base, except with `language: "en"`, where tiny.en hears English faster.
A language (ISO 639-1, as OpenAI takes it) is transcribed in that language, by Whisper
base unless it is English; with Whisper base and no language, Whisper detects it per
utterance and the transcript says which. Any other model name, a language Whisper does
not know, or tiny.en asked for another language is refused with the parameter named.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from faster_whisper.tokenizer import _LANGUAGE_CODES

from server.protocol.params import InvalidParam

TINY_EN = "whisper-tiny.en"
BASE = "whisper-base"
OPENAI_MODELS = (
    "whisper-1",
    "gpt-4o-transcribe",
    "gpt-4o-mini-transcribe",
    "gpt-4o-mini-transcribe-2025-12-15",
    "gpt-4o-transcribe-diarize",
    "gpt-transcribe",
    "gpt-live-transcribe",
    "gpt-realtime-whisper",
)
MODELS = (TINY_EN, BASE, *OPENAI_MODELS)
WHISPER_LANGUAGES = frozenset(_LANGUAGE_CODES)
PARAM = "session.audio.input.transcription"


@dataclass(frozen=True)
class TranscriptionConfig:
    model: str = TINY_EN
    language: str | None = None

    @property
    def multilingual(self) -> bool:
        """Whether Whisper base (not tiny.en) hears this session."""
        if self.model == TINY_EN:
            return False
        if self.model == BASE:
            return True
        return self.language != "en"

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "language": self.language}


def parse_transcription(raw: Any) -> TranscriptionConfig:
    """A session's `transcription` object, which replaces the previous one whole (null:
    the default). Without a model, the language picks one: tiny.en for English or none,
    Whisper base for any other."""
    if raw is None:
        return TranscriptionConfig()
    if not isinstance(raw, dict):
        raise InvalidParam(PARAM, f"{PARAM} must be an object or null")
    model = raw.get("model")
    if model is not None and model not in MODELS:
        raise InvalidParam(
            f"{PARAM}.model",
            f"Transcription model {str(model)[:60]!r} is not available; use one of "
            f"{', '.join(MODELS)}",
        )
    language = raw.get("language")
    if language == "":
        language = None
    if language is not None:
        if not isinstance(language, str) or language.lower() not in WHISPER_LANGUAGES:
            raise InvalidParam(
                f"{PARAM}.language",
                f"{PARAM}.language must be an ISO 639-1 code Whisper knows (en, es, de, "
                f"fr, zh, …), not {str(language)[:20]!r}",
            )
        language = language.lower()
    if model is None:
        model = TINY_EN if language in (None, "en") else BASE
    if model == TINY_EN and language not in (None, "en"):
        raise InvalidParam(
            f"{PARAM}.language",
            f"{TINY_EN} hears English only; use {BASE} (or whisper-1) for {language!r}",
        )
    return TranscriptionConfig(model=model, language=language or None)
