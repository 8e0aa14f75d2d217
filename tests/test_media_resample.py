"""Resampler: right length, right pitch, nothing lost across calls or rate changes."""

import av
import numpy as np
import pytest

from media.resample import Resampler
from tests.speech import speak


def sine(freq: float, rate: int, n: int, amplitude: int = 10000) -> np.ndarray:
    t = np.arange(n) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def peak_hz(pcm: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64) * np.hanning(len(pcm))))
    return float(np.fft.rfftfreq(len(pcm), 1 / rate)[np.argmax(spectrum)])


def stereo_frame(left: np.ndarray, right: np.ndarray, rate: int = 48000) -> av.AudioFrame:
    interleaved = np.stack([left, right], axis=1).reshape(1, -1)
    frame = av.AudioFrame.from_ndarray(interleaved, format="s16", layout="stereo")
    frame.sample_rate = rate
    return frame


def test_48k_stereo_frames_become_16k_mono_with_same_pitch():
    resampler = Resampler(16000)
    tone = sine(440, 48000, 48000)
    out = [resampler.frame(stereo_frame(c, c)) for c in np.split(tone, 50)]  # 20 ms frames
    out.append(resampler.flush())
    pcm = np.concatenate(out)
    assert pcm.dtype == np.int16 and pcm.ndim == 1
    assert abs(len(pcm) - 16000) <= 4
    assert abs(peak_hz(pcm, 16000) - 440) < 3
    # Downmix keeps the level of a centred signal (no halving, no clipping).
    assert 0.8 * 10000 < np.abs(pcm[1000:-1000]).max() < 1.05 * 10000


def test_stereo_downmix_averages_channels():
    resampler = Resampler(48000)
    left = np.full(960, 8000, dtype=np.int16)
    right = np.zeros(960, dtype=np.int16)
    pcm = resampler.frame(stereo_frame(left, right))
    assert len(pcm) == 960
    assert abs(int(np.median(pcm)) - 4000) < 200


@pytest.mark.parametrize("chunk", [441, 1000, 2205])
def test_22050_to_48000_length_over_many_pushes(chunk):
    resampler = Resampler(48000)
    tone = sine(1000, 22050, 22050)
    out = [resampler.pcm(part, 22050) for part in np.array_split(tone, len(tone) // chunk)]
    before_flush = sum(len(p) for p in out)
    out.append(resampler.flush())
    pcm = np.concatenate(out)
    assert before_flush < 48000  # the resampler really did hold a tail back
    assert abs(len(pcm) - 48000) <= 4
    assert abs(peak_hz(pcm, 48000) - 1000) < 3


def test_no_clicks_at_call_boundaries():
    """A per-call resampler would restart its filter every call and break the waveform."""
    resampler = Resampler(48000)
    tone = sine(300, 16000, 16000)
    pcm = np.concatenate([resampler.pcm(c, 16000) for c in np.split(tone, 50)])
    pcm = np.concatenate([pcm, resampler.flush()])
    # A 300 Hz sine at amplitude 10000 moves at most ~400 per sample at 48 kHz.
    jumps = np.abs(np.diff(pcm[200:-200].astype(np.int32)))
    assert jumps.max() < 600


def test_rate_change_mid_stream_keeps_all_audio():
    resampler = Resampler(16000)
    first = resampler.pcm(sine(200, 24000, 24000), 24000)
    second = resampler.pcm(sine(200, 22050, 22050), 22050)
    tail = resampler.flush()
    total = len(first) + len(second) + len(tail)
    assert abs(total - 32000) <= 8


def test_same_rate_passes_through_unchanged():
    resampler = Resampler(16000)
    pcm = sine(500, 16000, 1600)
    out = np.concatenate([resampler.pcm(pcm, 16000), resampler.flush()])
    np.testing.assert_array_equal(out, pcm)


def test_flush_then_reuse_starts_a_new_stream():
    resampler = Resampler(16000)
    resampler.pcm(sine(200, 48000, 4800), 48000)
    resampler.flush()
    assert len(resampler.flush()) == 0
    again = np.concatenate([resampler.pcm(sine(200, 48000, 4800), 48000), resampler.flush()])
    assert abs(len(again) - 1600) <= 2


def test_rejects_wrong_dtype_and_shape():
    resampler = Resampler(16000)
    with pytest.raises(ValueError):
        resampler.pcm(np.zeros(100, dtype=np.float32), 16000)
    with pytest.raises(ValueError):
        resampler.pcm(np.zeros((2, 100), dtype=np.int16), 16000)
    assert len(resampler.pcm(np.zeros(0, dtype=np.int16), 16000)) == 0


@pytest.mark.parametrize(("layout", "rate"), [("stereo", 48000), ("mono", 8000)])
def test_digital_silence_skips_the_converter_with_identical_output(layout, rate):
    """aiortc's decoded frames (Opus 48 kHz stereo, G.711 8 kHz mono): silence after silence
    is not converted, and the stream is sample for sample what the converter gives."""
    channels = 2 if layout == "stereo" else 1
    per_frame = rate // 50
    speech = speak("Silence, then words, then silence again.", rate)
    pattern = [0, 0, 0, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0]
    frames = []
    for i, voiced in enumerate(pattern):
        mono = speech[i * per_frame : (i + 1) * per_frame] if voiced else np.zeros(per_frame)
        interleaved = np.repeat(mono.astype(np.int16), channels).reshape(1, -1)
        frames.append(interleaved)

    def frame(data: np.ndarray) -> av.AudioFrame:
        f = av.AudioFrame.from_ndarray(data, format="s16", layout=layout)
        f.sample_rate = rate
        return f

    reference = av.AudioResampler(format="s16", layout="mono", rate=16000)
    expected = [f.to_ndarray().reshape(-1) for d in frames for f in reference.resample(frame(d))]
    expected += [f.to_ndarray().reshape(-1) for f in reference.resample(None)]
    resampler = Resampler(16000)
    got = [resampler.frame(frame(d)) for d in frames] + [resampler.flush()]
    assert np.array_equal(np.concatenate(got), np.concatenate(expected))
    assert resampler.skipped == 2 + 5 + 2  # each silent frame after a silent frame
