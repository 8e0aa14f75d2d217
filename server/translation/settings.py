"""A translation session's configuration, as OpenAI's `RealtimeTranslationSession` shapes it.

`{model, audio: {input: {transcription, noise_reduction}, output: {language}}}`. The model
is fixed at creation; `session.update` changes the target language, the source transcript
and noise reduction. Input audio is always 24 kHz PCM16 mono over the WebSocket: any other
`audio.input.format` is refused (lower-quality audio degrades the translation).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

from server.errors import InvalidInput

DEFAULT_MODEL = "gpt-realtime-translate"
DEFAULT_LANGUAGE = "en"
MAX_MODEL_CHARS = 128
NOISE_TYPES = ("near_field", "far_field")
INPUT_RATE = 24_000
# ISO 639-1 codes, optionally with a region ("pt-BR"): the region is kept, routing uses
# the language.
_LANGUAGE = re.compile(r"^[a-zA-Z]{2,3}(-[a-zA-Z0-9]{2,8})?$")


class TranslationSettingsError(InvalidInput):
    def __init__(self, message: str, param: str) -> None:
        super().__init__("invalid_value", message, param=param)


def language_of(code: str) -> str:
    """ "pt-BR" → "pt": what the translators and voices are chosen by."""
    return code.split("-", 1)[0].lower()


@dataclass(frozen=True)
class TranslationSettings:
    model: str = DEFAULT_MODEL
    output_language: str = DEFAULT_LANGUAGE
    transcription_model: str | None = None
    # The speaker's language, when known: `audio.input.transcription.language` (as in a
    # realtime session's transcription). Unset, Whisper detects it per segment.
    source_language: str | None = None
    noise_reduction: dict[str, Any] | None = None

    @property
    def target(self) -> str:
        return language_of(self.output_language)

    def apply(
        self, raw: Any, *, creating: bool = False, param: str = "session"
    ) -> TranslationSettings:
        """`raw` (a session object) over these settings; raises `TranslationSettingsError`."""
        if raw is None:
            return self
        if not isinstance(raw, dict):
            raise TranslationSettingsError(f"{param} must be an object", param)
        changes: dict[str, Any] = {}
        if "type" in raw and raw["type"] != "translation":
            raise TranslationSettingsError(f"{param}.type must be 'translation'", f"{param}.type")
        if "model" in raw:
            model = raw["model"]
            if not creating and model != self.model:
                raise TranslationSettingsError(
                    "session.model is set at creation and cannot be changed", f"{param}.model"
                )
            if not isinstance(model, str) or not model or len(model) > MAX_MODEL_CHARS:
                raise TranslationSettingsError(
                    f"model must be a string of 1-{MAX_MODEL_CHARS} characters", f"{param}.model"
                )
            changes["model"] = model
        audio = raw.get("audio")
        if audio is not None:
            if not isinstance(audio, dict):
                raise TranslationSettingsError("audio must be an object", f"{param}.audio")
            changes.update(_audio(audio, self, f"{param}.audio"))
        return dataclasses.replace(self, **changes)

    def _transcription(self) -> dict[str, Any] | None:
        if not self.transcription_model:
            return None
        shown: dict[str, Any] = {"model": self.transcription_model}
        if self.source_language:
            shown["language"] = self.source_language
        return shown

    def to_dict(self, session_id: str, expires_at: int) -> dict[str, Any]:
        """The `RealtimeTranslationSession` object the SDK validates."""
        audio_input: dict[str, Any] = {
            "transcription": self._transcription(),
            "noise_reduction": self.noise_reduction,
        }
        return {
            "id": session_id,
            "type": "translation",
            "model": self.model,
            "expires_at": expires_at,
            "audio": {"input": audio_input, "output": {"language": self.output_language}},
        }


def _audio(audio: dict[str, Any], current: TranslationSettings, param: str) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    source = audio.get("input")
    if source is not None:
        if not isinstance(source, dict):
            raise TranslationSettingsError("audio.input must be an object", f"{param}.input")
        _check_format(source.get("format"), f"{param}.input.format")
        if "transcription" in source:
            changes["transcription_model"], changes["source_language"] = _transcription(
                source["transcription"], f"{param}.input.transcription"
            )
        if "noise_reduction" in source:
            changes["noise_reduction"] = _noise(
                source["noise_reduction"], current.noise_reduction, f"{param}.input.noise_reduction"
            )
    target = audio.get("output")
    if target is not None:
        if not isinstance(target, dict):
            raise TranslationSettingsError("audio.output must be an object", f"{param}.output")
        if "language" in target:
            language = target["language"]
            if not isinstance(language, str) or not _LANGUAGE.match(language):
                raise TranslationSettingsError(
                    "audio.output.language must be a language code such as 'en', 'es' or 'pt-BR'",
                    f"{param}.output.language",
                )
            changes["output_language"] = language
    return changes


def _check_format(fmt: Any, param: str) -> None:
    """Only 24 kHz PCM16 is accepted (OpenAI refuses other WebSocket formats too)."""
    if fmt is None:
        return
    ok = (
        isinstance(fmt, dict)
        and fmt.get("type") == "audio/pcm"
        and fmt.get("rate", INPUT_RATE) == INPUT_RATE
    )
    if not ok:
        raise TranslationSettingsError(
            "Translation input must be 24 kHz PCM16 mono: audio.input.format "
            "{'type': 'audio/pcm', 'rate': 24000}",
            param,
        )


def _transcription(value: Any, param: str) -> tuple[str | None, str | None]:
    """(model, the source language hint) of `audio.input.transcription`."""
    if value is None:
        return None, None
    if not isinstance(value, dict) or not isinstance(value.get("model"), str) or not value["model"]:
        raise TranslationSettingsError("transcription must be {'model': '…'} or null", param)
    if len(value["model"]) > MAX_MODEL_CHARS:
        raise TranslationSettingsError("transcription.model is too long", f"{param}.model")
    language = value.get("language")
    if language is not None and (not isinstance(language, str) or not _LANGUAGE.match(language)):
        raise TranslationSettingsError(
            "transcription.language must be a language code such as 'es'", f"{param}.language"
        )
    return str(value["model"]), language_of(language) if language else None


def _noise(value: Any, current: dict[str, Any] | None, param: str) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or value.get("type") not in NOISE_TYPES:
        raise TranslationSettingsError(
            f"noise_reduction must be null or {{'type': one of {', '.join(NOISE_TYPES)}}}", param
        )
    strength = value.get("strength", (current or {}).get("strength", 1.0))
    if isinstance(strength, bool) or not isinstance(strength, int | float) or strength < 0:
        raise TranslationSettingsError("noise_reduction.strength must be a number >= 0", param)
    return {"type": value["type"], "strength": float(strength)}
