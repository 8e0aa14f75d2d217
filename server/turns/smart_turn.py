"""Smart Turn v3.2: does the audio of the turn so far sound finished?

An alternative to the word rules of `server.turns.end_of_turn`: a small audio model
(Whisper-tiny encoder with a classifier, by Daily, BSD-2) that hears intonation and
trailing-off as well as the words, and needs no transcript. It reads the last 8 s of
16 kHz audio as Whisper log-mel features `[1, 80, 800]` and returns the probability that
the speaker has finished. The input is built as the model was trained: zeros in front of
a shorter turn, the waveform scaled to zero mean and unit variance, Whisper's log-mel.

One `SmartTurn` (one ONNX session, ~70 ms a call on one CPU core) serves every call; its
calls run in order on its own worker thread, never on the event loop.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import onnxruntime as ort

from server.engines.threaded import EngineWorker
from server.turns.smart_turn_model import PACKAGE, VERSION, model_path

SAMPLE_RATE = 16000
WINDOW_S = 8
WINDOW_SAMPLES = SAMPLE_RATE * WINDOW_S
FRAMES = 800
# pipecat's own cut: above this the turn is "complete".
COMPLETE_ABOVE = 0.5


@functools.cache
def _log_mel():  # faster-whisper's numpy log-mel, imported on first use
    from faster_whisper.feature_extractor import FeatureExtractor

    return FeatureExtractor(feature_size=80, sampling_rate=SAMPLE_RATE, chunk_length=WINDOW_S)


class SmartTurnInputError(ValueError):
    """Audio Smart Turn cannot judge: not 1-D float32 samples, empty, or not finite."""


def check_audio(audio: np.ndarray) -> None:
    """Raise `SmartTurnInputError` unless `audio` is mono float32 or int16, not empty."""
    if not isinstance(audio, np.ndarray):
        raise SmartTurnInputError(f"audio must be a numpy array, got {type(audio).__name__}")
    if audio.dtype not in (np.float32, np.int16):
        raise SmartTurnInputError(
            f"audio must be 16 kHz float32 samples in [-1, 1] or int16 PCM, got dtype {audio.dtype}"
        )
    if audio.ndim != 1:
        raise SmartTurnInputError(f"audio must be mono (1-D), got shape {audio.shape}")
    if audio.size == 0:
        raise SmartTurnInputError("audio is empty: there is no turn to judge")
    if not np.isfinite(audio[-WINDOW_SAMPLES:]).all():
        raise SmartTurnInputError("audio holds NaN or infinite samples")


def features(audio: np.ndarray) -> np.ndarray:
    """The model's input for `audio` (16 kHz mono, float32 in [-1, 1] or int16 PCM, the
    segmenter's own): `[1, 80, 800]`."""
    check_audio(audio)
    window = audio[-WINDOW_SAMPLES:]
    if window.dtype == np.int16:
        window = window.astype(np.float32) / 32768.0
    padded = np.zeros(WINDOW_SAMPLES, dtype=np.float32)
    padded[WINDOW_SAMPLES - window.size :] = window
    # Scale the whole window, padding included, as the model's training did.
    padded = (padded - padded.mean()) / np.sqrt(padded.var() + 1e-7)
    mel = _log_mel()(padded, padding=0)
    return mel[np.newaxis, :, :FRAMES].astype(np.float32)


class SmartTurn:
    """The loaded model. `probability` blocks; `predict` runs it on the model's thread."""

    def __init__(self, session: ort.InferenceSession) -> None:
        self._session = session
        inputs = session.get_inputs()
        if len(inputs) != 1 or list(inputs[0].shape)[-2:] != [80, FRAMES]:
            raise RuntimeError(
                f"unexpected Smart Turn interface {[(i.name, i.shape) for i in inputs]}; "
                f"want the model of {PACKAGE}=={VERSION}"
            )
        self._input = inputs[0].name
        self._worker = EngineWorker("smart-turn")

    @classmethod
    def load(cls, path: Path) -> SmartTurn:
        """Open the checked model file at `path` (see `smart_turn_model.model_path`)."""
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # many calls share few cores
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        return cls(session)

    @classmethod
    def installed(cls) -> SmartTurn:
        """The model `scripts/install.sh` fetched, after checking its sha256."""
        return cls.load(model_path())

    def probability(self, audio: np.ndarray) -> float:
        """How likely the speaker of `audio` (the turn so far) has finished, 0 to 1."""
        (scores,) = self._session.run(None, {self._input: features(audio)})
        return float(np.asarray(scores).reshape(-1)[0])

    async def predict(self, audio: np.ndarray) -> float:
        """`probability` off the event loop (bad input raises here, before any queueing)."""
        check_audio(audio)
        return await self._worker.run(self.probability, audio)

    @staticmethod
    def complete(probability: float) -> bool:
        return probability > COMPLETE_ABOVE
