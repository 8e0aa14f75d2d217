"""One TTS for the call, many languages: Piper (or espeak-ng) for English, Kokoro for the
rest, chosen by the voice (`joe` speaks English, `es-alpha` Spanish).

Kokoro loads when a call first asks for a language voice (or at start with
HARK_MULTILINGUAL=start). Its 24 kHz audio is resampled to the English engine's rate,
so the rest of the reply path sees one engine with one `sample_rate`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing

import numpy as np

from media.resample import Resampler
from server.engines.base import TextToSpeech
from server.engines.kokoro_tts import KokoroTTS
from server.engines.language_voices import (
    LANGUAGES,
    looks_like_language_voice,
    parse_voice,
    spoken_codes,
)
from server.engines.on_first_use import OnFirstUse
from server.engines.voices import VoiceError


class LanguageTTS:
    speaks_languages = True

    def __init__(self, english: TextToSpeech, kokoro: KokoroTTS, *, preload: bool) -> None:
        self.english = english
        self.name = english.name
        self.clause_batch_chars = getattr(english, "clause_batch_chars", 0)
        self.kokoro = OnFirstUse(kokoro, "Kokoro-82M (voices for other languages)")
        self._preload = preload

    @property
    def sample_rate(self) -> int:
        return self.english.sample_rate

    @property
    def languages(self) -> tuple[str, ...]:
        return ("en", *LANGUAGES)

    async def load(self) -> None:
        await self.english.load()
        if self._preload:
            await self.kokoro.get()

    def check_voice(self, voice: str) -> None:
        """Refuse a language voice no one speaks (`ru-alpha`), naming those that exist."""
        if looks_like_language_voice(voice):
            raise VoiceError(
                "voice_not_found",
                f"No voice {voice!r}: language voices speak {spoken_codes()} (see GET /v1/voices)",
            )

    async def synthesize(
        self, text: str, voice: str | None = None, speed: float = 1.0
    ) -> AsyncIterator[np.ndarray]:
        if parse_voice(voice) is None:
            stream = self.english.synthesize(text, voice, speed)
            async with aclosing(stream) as chunks:
                async for chunk in chunks:
                    yield chunk
            return
        kokoro = await self.kokoro.get()
        resampler = Resampler(self.sample_rate)
        async with aclosing(kokoro.synthesize(text, voice, speed)) as chunks:
            async for chunk in chunks:
                out = resampler.pcm(chunk, kokoro.sample_rate)
                if out.size:
                    yield out
        tail = resampler.flush()
        if tail.size:
            yield tail
