"""The three engine contracts a call needs: speech-to-text, language model, text-to-speech.

Each is small on purpose, so a new implementation (a GPU engine, a remote server) is one
module. Blocking engines do their heavy work in their own worker thread; every method a
session awaits returns without holding the event loop, so the 20 ms audio path never waits.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

# ChatMessage moved to the chat contract; imported from here by older code.
from server.engines.chat import ChatMessage as ChatMessage
from server.engines.chat import LLMOutput, LLMRequest
from server.engines.faults import Clip, render_apology

# Whisper's words for a cough, click, breath or hum ("Okay.", "Oh.", "you.") come with
# no_speech_prob >= 0.5 and avg_logprob <= -1.4; real questions, clean or at 10 dB SNR,
# and short backchannels stay far from both (measured in tests/bench/stt_speed.py).
NOISE_NO_SPEECH_PROB = 0.4
NOISE_AVG_LOGPROB = -1.0


@dataclass(frozen=True)
class Transcript:
    """A transcript with Whisper's confidence, to tell words from noise.

    `no_speech_prob` is the highest probability of the no-speech token over the segments;
    `avg_logprob` is the mean log probability of the text tokens (0 is certain; noise
    that Whisper turns into "you" or "Thank you." scores far below real words).
    """

    text: str
    no_speech_prob: float
    avg_logprob: float
    duration: float  # seconds of audio transcribed
    # ISO 639-1 code the words were decoded in ("en" for an English-only model); with a
    # multilingual model and no language asked for, the one Whisper detected.
    language: str = ""
    language_probability: float = 1.0
    detected: bool = False  # the language was Whisper's guess, not the session's

    @classmethod
    def empty(cls, duration: float, language: str = "") -> Transcript:
        return cls(
            text="", no_speech_prob=1.0, avg_logprob=0.0, duration=duration, language=language
        )

    @property
    def has_words(self) -> bool:
        """False for noise Whisper put words to: unsure there was speech and unsure of
        the words (thresholds: NOISE_* above)."""
        if not self.text:
            return False
        return not (
            self.no_speech_prob >= NOISE_NO_SPEECH_PROB and self.avg_logprob <= NOISE_AVG_LOGPROB
        )


class EngineUnavailable(RuntimeError):
    """An engine cannot load: a package, model file or server is missing. Says which."""


@runtime_checkable
class SpeechToText(Protocol):
    name: str

    async def load(self) -> None:
        """Load and warm up the model once at start-up."""

    async def transcribe(self, audio: np.ndarray) -> str:
        """Transcribe 16 kHz mono int16 audio; runs off the event loop."""

    async def transcribe_detailed(
        self, audio: np.ndarray, language: str | None = None
    ) -> Transcript:
        """Like `transcribe`, with the confidence needed to tell words from noise.

        `language`: the ISO 639-1 code to decode in; None lets a multilingual model
        detect it (the transcript says which). An English-only model ignores it.
        """


@runtime_checkable
class LanguageModel(Protocol):
    name: str

    async def load(self) -> None: ...

    def stream(self, request: LLMRequest) -> AsyncIterator[LLMOutput]:
        """Yield the reply as it is generated: text deltas (`str`), tool calls
        (`ToolCallDelta`s), perhaps an `LLMFinish` last (see `server.engines.chat`).

        Closing the iterator early (barge-in) stops generation promptly.
        """
        ...


@runtime_checkable
class TextToSpeech(Protocol):
    name: str
    sample_rate: int

    async def load(self) -> None: ...

    def synthesize(
        self, text: str, voice: str | None = None, speed: float = 1.0
    ) -> AsyncIterator[np.ndarray]:
        """Yield mono int16 PCM chunks at `sample_rate` as soon as each is ready; `speed`
        is OpenAI's `audio.output.speed` (0.25-1.5, 1 = the voice's own pace).

        Closing the iterator early stops synthesis.
        """
        ...


@dataclass
class Engines:
    stt: SpeechToText
    llm: LanguageModel
    tts: TextToSpeech
    # The apology rendered at start-up, said when the TTS itself fails (engines.faults).
    apology: Clip | None = None
    # Whisper base for sessions in other languages when `stt` is English-only (loaded on
    # first use, or in `load()` with `preload_multilingual`); None: English only.
    multilingual_stt: SpeechToText | None = None
    preload_multilingual: bool = False
    # A reply's first chunk for the TTS may end after this many words (0: only at a
    # clause or phrase), so the first audio waits for fewer LLM tokens
    # (HARK_FIRST_CHUNK_WORDS; `server.reply.sentences`).
    first_chunk_words: int = 0

    def stages(self) -> list[tuple[str, SpeechToText | LanguageModel | TextToSpeech]]:
        """Each engine with a label, in the order a turn uses them (and they load)."""
        return [
            (f"speech-to-text ({self.stt.name})", self.stt),
            (f"language model ({self.llm.name})", self.llm),
            (f"text-to-speech ({self.tts.name})", self.tts),
        ]

    async def load(self) -> None:
        for _, engine in self.stages():
            await engine.load()
        if self.multilingual_stt is not None and self.preload_multilingual:
            await self.multilingual_stt.load()
        await self.prepare_apology()

    def queue_depths(self) -> dict[str, int]:
        """Jobs waiting on each engine that queues them (a shared GPU worker)."""
        return {
            label: int(depth)
            for label, engine in self.stages()
            if (depth := getattr(engine, "queue_depth", None)) is not None
        }

    async def prepare_apology(self) -> None:
        """Say the apology once now, to have it when the TTS itself fails in a call."""
        self.apology = await render_apology(self.tts)
