"""One Whisper encoder pass per segment, then as many short decodes as the route needs.

A segment is encoded once, in a 10 s window (Whisper pads every input to 30 s; the
segmenter keeps segments under 10 s, and a 10 s window costs about a third of the
encoder work, as in `server.engines.faster_whisper_stt`). Its language is detected
from that encoding (or taken as the client named it), then the same encoder output is
decoded for the source words (`task="transcribe"`) and, for English targets, for
Whisper's own English (`task="translate"`): two short decodes, not two 30 s passes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import ctranslate2
import numpy as np
from faster_whisper import WhisperModel
from faster_whisper.tokenizer import Tokenizer

SAMPLE_RATE = 16_000
FRAMES_PER_SECOND = 100
WINDOW_S = 10
TOKENS_PER_SECOND = 8  # fast speech is ~5 a second: a decode past this is looping
BEAM_SIZE = 2
# Below this Whisper is sure of no words (a cough, a click): nothing to translate.
MAX_NO_SPEECH_PROB = 0.6


@dataclass(frozen=True)
class Pass:
    language: str
    text: str
    english: str | None  # Whisper's translation, when asked for


class WhisperPass:
    def __init__(self, model: WhisperModel) -> None:
        self.model = model
        self.multilingual = bool(model.model.is_multilingual)

    def run(
        self, audio: np.ndarray, language: str | None, wants_english: Callable[[str], bool]
    ) -> Pass | None:
        """Blocking (a worker thread). `wants_english(language)`: whether Whisper's
        English translation of a segment in that language is wanted too."""
        model = self.model
        samples = audio.astype(np.float32) / 32768.0
        seconds = max(WINDOW_S, min(30, int(np.ceil(samples.size / SAMPLE_RATE))))
        frames = seconds * FRAMES_PER_SECOND
        mel = model.feature_extractor(samples)[:, :frames]
        window = np.zeros((1, mel.shape[0], frames), np.float32)
        window[0, :, : mel.shape[1]] = mel
        encoded = model.model.encode(ctranslate2.StorageView.from_array(window))
        if not self.multilingual:
            language = "en"
        elif not language:
            token, _ = model.model.detect_language(encoded)[0][0]
            language = token.strip("<|>")
        cap = int(4 + TOKENS_PER_SECOND * samples.size / SAMPLE_RATE)
        text, no_speech = self._decode(encoded, language, "transcribe", cap)
        if not text or no_speech >= MAX_NO_SPEECH_PROB:
            return None
        english = None
        if language != "en" and wants_english(language):
            english, _ = self._decode(encoded, language, "translate", cap)
        return Pass(language, text, english)

    def _decode(
        self, encoded: ctranslate2.StorageView, language: str, task: str, cap: int
    ) -> tuple[str, float]:
        model = self.model
        tokenizer = Tokenizer(model.hf_tokenizer, self.multilingual, task, language)
        prompt = [*tokenizer.sot_sequence, tokenizer.no_timestamps]
        result = model.model.generate(
            encoded,
            [prompt],
            beam_size=BEAM_SIZE,
            max_length=len(prompt) + cap,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=[-1],
        )[0]
        tokens = [t for t in result.sequences_ids[0] if t < tokenizer.eot]
        return tokenizer.decode(tokens).strip(), float(result.no_speech_prob)
