"""Voices a cloning TTS speaks with: a reference clip and its transcript.

A cloning engine (F5-TTS) speaks any voice it is shown a few seconds of, given the words
said in the clip. Hark names three kinds of voice in `audio.output.voice`:
- an engine's built-in voice ("joe", or an OpenAI name): no reference needed;
- a stored profile, `voice_…`: the reference comes from a `VoiceResolver` (the voice
  store, per tenant);
- `caller`: the caller's own voice, taken from their first clean utterance of the call.
An engine that cannot clone refuses the last two; it never falls back silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from server.engines.language_voices import parse_voice

CALLER_VOICE = "caller"
PROFILE_PREFIX = "voice_"
MIN_REFERENCE_S = 1.0
MAX_REFERENCE_S = 30.0


class VoiceError(ValueError):
    """A voice cannot be used: the engine cannot clone, or the reference is unusable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, eq=False)
class VoiceReference:
    """Mono PCM (int16, or float in [-1, 1]) at `sample_rate`, and the words it says.

    Compared by identity (`eq=False`): engines cache what they derive from a reference
    (resampled audio, its mel spectrogram) per object.
    """

    pcm: np.ndarray
    sample_rate: int
    text: str
    name: str = field(default="")

    def __post_init__(self) -> None:
        if self.pcm.ndim != 1:
            raise VoiceError("invalid_voice_reference", "a voice reference must be mono")
        if self.sample_rate < 8000:
            raise VoiceError(
                "invalid_voice_reference", f"sample rate {self.sample_rate} Hz is too low"
            )
        if not MIN_REFERENCE_S <= self.duration_s <= MAX_REFERENCE_S:
            raise VoiceError(
                "invalid_voice_reference",
                f"a voice reference must last {MIN_REFERENCE_S:g}-{MAX_REFERENCE_S:g} s, "
                f"not {self.duration_s:.1f} s",
            )
        if not self.text.strip():
            raise VoiceError("invalid_voice_reference", "a voice reference needs its transcript")

    @property
    def duration_s(self) -> float:
        return len(self.pcm) / self.sample_rate

    def float32(self) -> np.ndarray:
        """The samples as float32 in [-1, 1]."""
        if self.pcm.dtype == np.int16:
            return self.pcm.astype(np.float32) / 32768.0
        return np.clip(self.pcm.astype(np.float32), -1.0, 1.0)


class VoiceResolver(Protocol):
    """Where stored voice profiles come from (the voice store, per tenant)."""

    async def resolve(self, tenant: str, voice_id: str) -> VoiceReference | None:
        """The profile's reference, or None if the tenant has no such voice."""
        ...


def needs_reference(voice: str | None) -> bool:
    """A stored profile or the caller's own voice: only a cloning engine can speak it."""
    return bool(voice) and (voice == CALLER_VOICE or voice.startswith(PROFILE_PREFIX))


def can_clone(tts: object) -> bool:
    """Whether a TTS engine speaks with a reference (`clones_voices = True`)."""
    return bool(getattr(tts, "clones_voices", False))


def check_voice(tts: object, voice: str | None) -> None:
    """Refuse a cloned voice on an engine that cannot clone, and a language voice
    (`es-alpha`) that the engine does not have (raises `VoiceError`)."""
    if voice and parse_voice(voice) is not None and not getattr(tts, "speaks_languages", False):
        raise VoiceError(
            "voice_not_supported",
            f"The voice {voice!r} is Kokoro's, and this server speaks English only "
            "(HARK_MULTILINGUAL=off, or a TTS engine without language voices)",
        )
    if voice and hasattr(tts, "check_voice"):
        tts.check_voice(voice)
    if needs_reference(voice) and not can_clone(tts):
        name = getattr(tts, "name", type(tts).__name__)
        kind = "the caller's own voice" if voice == CALLER_VOICE else f"the voice profile {voice!r}"
        raise VoiceError(
            "voice_not_supported",
            f"The text-to-speech engine '{name}' cannot clone voices, so it cannot speak "
            f"{kind}; run Hark with HARK_TTS=f5 (the gpu extra) or choose a built-in voice",
        )
