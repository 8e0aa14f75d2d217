"""Silero on onnxruntime: real speech scores high, silence and hiss score low."""

import shutil

import numpy as np
import pytest

from media import vad
from media.vad import SileroModel, SileroVad, VadModelError
from tests.speech import silence, speak


def frames(pcm: np.ndarray) -> list[np.ndarray]:
    return [pcm[i : i + 512] for i in range(0, len(pcm) - 511, 512)]


@pytest.fixture(scope="module")
def model() -> SileroModel:
    return SileroModel.load()


def active(pcm: np.ndarray) -> np.ndarray:
    """The frames of `pcm` that carry voice energy, by a plain RMS gate."""
    return np.array([np.sqrt(np.mean(f.astype(np.float64) ** 2)) > 1000 for f in frames(pcm)])


def test_real_speech_scores_high(model):
    detector = SileroVad(model)
    pcm = speak("The quick brown fox jumps over the lazy dog near the river bank.")
    probs = np.array([detector(f) for f in frames(pcm)])
    loud = active(pcm)
    assert loud.sum() > 20
    # Voiced frames are almost all speech; Silero is known to dip on single frames.
    assert np.mean(probs[loud] >= 0.5) > 0.85
    assert np.median(probs[loud]) > 0.9


def test_silence_and_low_noise_score_low(model):
    quiet = SileroVad(model)
    assert max(quiet(f) for f in frames(silence(2000))) < 0.1
    # A fresh stream, as a real microphone's hiss is there from the first frame on.
    hissing = SileroVad(model)
    rng = np.random.default_rng(7)
    hiss = rng.normal(0, 300, 32000).clip(-32768, 32767).astype(np.int16)
    probs = [hissing(f) for f in frames(hiss)]
    assert max(probs) < 0.2
    assert np.mean(probs) < 0.05


def test_streams_are_independent_and_reset_restores_start_state(model):
    pcm = speak("Testing one two three.")
    first = [SileroVad(model)(f) for f in frames(pcm)[:3]]  # fresh detector per frame
    detector = SileroVad(model)
    detector(frames(pcm)[10])
    detector(frames(pcm)[11])
    detector.reset()
    assert detector(frames(pcm)[0]) == pytest.approx(first[0], abs=1e-6)
    # State carries between frames: the same frame scores differently after speech.
    warm = SileroVad(model)
    for f in frames(pcm)[:12]:
        warm(f)
    assert warm(frames(pcm)[12]) != pytest.approx(SileroVad(model)(frames(pcm)[12]), abs=1e-4)


def test_frame_must_be_512_int16(model):
    detector = SileroVad(model)
    with pytest.raises(ValueError):
        detector(np.zeros(480, dtype=np.int16))
    with pytest.raises(ValueError):
        detector(np.zeros(512, dtype=np.float32))


def test_load_is_shared():
    assert SileroModel.load() is SileroModel.load()


def test_sha256_mismatch_names_the_package(tmp_path):
    altered = tmp_path / "silero_vad.onnx"
    shutil.copyfile(vad.model_path(), altered)
    with altered.open("ab") as f:
        f.write(b"\0")
    with pytest.raises(VadModelError, match=r"pip install --no-deps silero-vad==6\.2\.3"):
        SileroModel.load(altered)


def test_missing_package_names_the_package(monkeypatch):
    monkeypatch.setattr(vad, "PACKAGE", "silero-vad-not-installed")
    with pytest.raises(VadModelError, match=r"silero-vad"):
        vad.model_path()
