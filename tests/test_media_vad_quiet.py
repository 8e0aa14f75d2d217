"""Silero skips digital silence: a silent caller costs almost nothing, and no speech onset
after the silence is missed or moved."""

import numpy as np
import pytest

from media.segmenter import SpeechSegmenter, SpeechStarted, TurnDetection
from media.vad import QUIET_PEAK, QUIET_SETTLE_FRAMES, SileroModel, SileroVad
from tests.speech import silence, speak


def frames(pcm: np.ndarray) -> list[np.ndarray]:
    return [pcm[i : i + 512] for i in range(0, len(pcm) - 511, 512)]


@pytest.fixture(scope="module")
def model() -> SileroModel:
    return SileroModel.load()


def scaled(pcm: np.ndarray, peak: int) -> np.ndarray:
    return (pcm.astype(np.float64) * peak / np.abs(pcm).max()).round().astype(np.int16)


def run(detector: SileroVad, pcm: np.ndarray) -> tuple[list[float], list[int]]:
    """Probabilities per frame, and the `audio_start_ms` of each turn the segmenter starts."""
    segmenter = SpeechSegmenter(TurnDetection())
    probs, starts = [], []
    for i, frame in enumerate(frames(pcm)):
        p = detector(frame)
        probs.append(p)
        for event in segmenter.push(frame, p, (i + 1) * 32):
            if isinstance(event, SpeechStarted):
                starts.append(event.audio_start_ms)
    return probs, starts


@pytest.mark.parametrize("peak", [32123, 1000])  # loud, normal
def test_speech_after_silence_scores_as_without_skipping(model, peak):
    words = scaled(speak("Hello there, what is the weather like in Paris today?"), peak)
    pcm = np.concatenate([silence(3000), words, silence(1500), words, silence(1000)])
    skipping, full = SileroVad(model), SileroVad(model, skip_quiet=False)
    probs, starts = run(skipping, pcm)
    full_probs, full_starts = run(full, pcm)
    # The silences were skipped (most of the 3 s before the first words) ...
    assert skipping.skipped > 60
    assert full.skipped == 0
    # ... yet every onset is found at the same place, and every score is Silero's own.
    assert full_starts, "the unskipped detector heard speech"
    assert starts == full_starts
    assert probs == pytest.approx(full_probs, abs=0.08)


def test_faint_speech_after_silence_is_not_missed(model):
    """Speech at -60 dBFS peak, the faintest Silero hears at all: skipping finds every onset
    the model alone finds (it may hear one more, never one less)."""
    faint = scaled(speak("Hello there, what is the weather like in Paris today?"), 32)
    for lead_ms in (500, 3000):
        pcm = np.concatenate([silence(lead_ms), faint, silence(1500), faint, silence(1000)])
        skipping = SileroVad(model)
        _, starts = run(skipping, pcm)
        _, full_starts = run(SileroVad(model, skip_quiet=False), pcm)
        assert set(full_starts) <= set(starts)
        assert starts, "faint speech was heard"


def test_quiet_noise_is_never_skipped(model):
    """A real microphone's floor is above QUIET_PEAK: Silero judges every frame of it."""
    rng = np.random.default_rng(3)
    hiss = rng.normal(0, 4, 16000 * 3).round().clip(-40, 40).astype(np.int16)
    assert np.abs(hiss).max() > QUIET_PEAK
    detector = SileroVad(model)
    run(detector, hiss)
    assert detector.skipped == 0


def test_skipping_starts_only_after_settling(model):
    detector = SileroVad(model)
    for frame in frames(silence(32 * QUIET_SETTLE_FRAMES)):
        detector(frame)
    assert detector.skipped == 0  # the first frames of silence still go through the model
    detector(np.zeros(512, dtype=np.int16))
    assert detector.skipped == 1
    detector.reset()
    detector(np.zeros(512, dtype=np.int16))
    assert detector.skipped == 1  # a reset stream settles again
