"""Silero VAD on onnxruntime, without torch.

The weights come from the pinned `silero-vad` wheel, installed with --no-deps because its
metadata pulls in torch; we never import its Python package (that would import torch),
we only read its ONNX file and check the file's sha256 so a different model can't slip
in unnoticed. One `SileroModel` (one ORT session) serves every call; each call keeps its
own `SileroVad` stream state.
"""

from __future__ import annotations

import functools
import importlib.metadata
from pathlib import Path

import numpy as np
import onnxruntime as ort

from media.checksum import file_sha256

PACKAGE = "silero-vad"
VERSION = "6.2.3"
INSTALL_HINT = f"pip install --no-deps {PACKAGE}=={VERSION}"
MODEL_FILE = "silero_vad/data/silero_vad.onnx"
MODEL_SHA256 = "1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3"

SAMPLE_RATE = 16000
FRAME_SAMPLES = 512  # the only window the 16 kHz model accepts
CONTEXT_SAMPLES = 64  # the tail of the previous window the model expects in front
# Frames whose every sample is within +-QUIET_PEAK (-78 dBFS) are digital silence or a
# codec's idea of it: Piper speech scaled to this peak scores at most 0.02, and it takes
# a peak of ~32 before Silero calls speech speech. After QUIET_SETTLE_FRAMES such frames
# scored below QUIET_PROBABILITY, further quiet frames are not run through the model (a
# muted or silent caller costs almost nothing) and the recurrent state is kept as it was.
# Silero's state never quite settles on silence, so scores after a skipped run differ a
# little from the model's own (<= 0.08 on speech in tests/test_media_vad_quiet.py), with
# every onset found at the same frame; very faint speech (peak -60 dBFS) after a long
# silence is heard slightly more readily than the model alone would. 24 frames (768 ms)
# was the shortest settling that kept every onset in place (8 moved one by 32 ms).
QUIET_PEAK = 4
QUIET_SETTLE_FRAMES = 24
QUIET_PROBABILITY = 0.01  # the segmenter's floor for silence: below any threshold's


class VadModelError(RuntimeError):
    """The Silero model file is missing, altered, or has an unexpected interface."""


def model_path() -> Path:
    """Where the pinned wheel installed the ONNX file."""
    try:
        dist = importlib.metadata.distribution(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise VadModelError(f"{PACKAGE} is not installed; run: {INSTALL_HINT}") from None
    path = Path(str(dist.locate_file(MODEL_FILE)))
    if not path.is_file():
        raise VadModelError(f"{path} is missing; reinstall with: {INSTALL_HINT}")
    return path


def verify(path: Path) -> None:
    """Refuse any file other than the one we tested with."""
    try:
        digest = file_sha256(path)
    except OSError as e:
        raise VadModelError(f"cannot read {path} ({e}); reinstall with: {INSTALL_HINT}") from e
    if digest != MODEL_SHA256:
        raise VadModelError(
            f"{path} has sha256 {digest}, expected {MODEL_SHA256} from "
            f"{PACKAGE}=={VERSION}; reinstall with: {INSTALL_HINT}"
        )


class SileroModel:
    """One ONNX session, shared: single-threaded so many calls can share 2 cores fairly."""

    def __init__(self, session: ort.InferenceSession) -> None:
        self.session = session
        # Find the tensors by shape and type rather than trusting names across versions.
        audio = state = rate = None
        for tensor in session.get_inputs():
            if tensor.type == "tensor(int64)":
                rate = tensor.name
            elif len(tensor.shape) == 2:
                audio = tensor.name
            elif len(tensor.shape) == 3:
                state = tensor.name
        outputs = session.get_outputs()
        if audio is None or state is None or rate is None or len(outputs) != 2:
            raise VadModelError(
                "unexpected Silero interface (want audio, state, sr -> probability, state); "
                f"reinstall with: {INSTALL_HINT}"
            )
        self._audio, self._state, self._rate = audio, state, rate
        prob_first = len(outputs[0].shape) == 2
        self._outputs = [o.name for o in (outputs if prob_first else outputs[::-1])]
        self._sr = np.array(SAMPLE_RATE, dtype=np.int64)

    @classmethod
    def load(cls, path: Path | None = None) -> SileroModel:
        """Load and verify the model. Cached per path: every call gets the same instance."""
        return _load(Path(path) if path is not None else model_path())

    def infer(self, audio: np.ndarray, state: np.ndarray) -> tuple[float, np.ndarray]:
        """One window: float32 [1, 64+512] in [-1, 1] and state [2, 1, 128]."""
        prob, new_state = self.session.run(
            self._outputs, {self._audio: audio, self._state: state, self._rate: self._sr}
        )
        return float(prob.reshape(-1)[0]), new_state


@functools.lru_cache(maxsize=4)
def _load(path: Path) -> SileroModel:
    verify(path)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as e:  # onnxruntime raises its own untyped errors
        raise VadModelError(f"cannot load {path}: {e}; reinstall with: {INSTALL_HINT}") from e
    return SileroModel(session)


class SileroVad:
    """One audio stream's detector: the model is recurrent, so each call needs its own state.

    About 0.3 ms per 32 ms frame on one core, cheap enough to run on the event loop; a
    run of digital silence skips the model once its state has settled (`skipped` counts
    those frames), returning the last probability the model gave for it.
    """

    def __init__(self, model: SileroModel, *, skip_quiet: bool = True) -> None:
        self.model = model
        self.skip_quiet = skip_quiet
        self.skipped = 0
        self._window = np.zeros((1, CONTEXT_SAMPLES + FRAME_SAMPLES), dtype=np.float32)
        self.reset()

    def reset(self) -> None:
        """Forget the stream (a new call, or the input buffer was cleared)."""
        self._state = np.zeros((2, 1, 128), dtype=np.float32)
        self._window[:] = 0.0
        self._quiet_run = 0  # consecutive quiet frames the model scored below the floor
        self._last = 0.0

    def __call__(self, frame: np.ndarray) -> float:
        """Speech probability of exactly 512 int16 samples at 16 kHz."""
        if frame.shape != (FRAME_SAMPLES,) or frame.dtype != np.int16:
            raise ValueError(
                f"expected {FRAME_SAMPLES} int16 samples, got {frame.dtype} {frame.shape}"
            )
        window = self._window
        window[0, :CONTEXT_SAMPLES] = window[0, -CONTEXT_SAMPLES:]
        quiet = self.skip_quiet and _quiet(frame)
        if quiet and self._quiet_run >= QUIET_SETTLE_FRAMES:
            # Only the context the next window takes from this frame is kept up to date.
            window[0, -CONTEXT_SAMPLES:] = frame[-CONTEXT_SAMPLES:]
            window[0, -CONTEXT_SAMPLES:] *= 1.0 / 32768.0
            self.skipped += 1
            return self._last
        window[0, CONTEXT_SAMPLES:] = frame
        window[0, CONTEXT_SAMPLES:] *= 1.0 / 32768.0
        prob, self._state = self.model.infer(window, self._state)
        self._last = prob
        self._quiet_run = self._quiet_run + 1 if quiet and prob < QUIET_PROBABILITY else 0
        return prob


def _quiet(frame: np.ndarray) -> bool:
    """Every sample within +-QUIET_PEAK (int16 min/max: no int32 copy of the frame)."""
    return bool(frame.max() <= QUIET_PEAK and frame.min() >= -QUIET_PEAK)
