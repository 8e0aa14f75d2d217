"""Audio on the WebSocket wire: G.711 µ-law / A-law, PCM16, and the per-stream converters."""

from __future__ import annotations

import numpy as np
import pytest

from media import g711
from media.wire_audio import (
    WireAudioError,
    WireDecoder,
    WireEncoder,
    WireFormat,
    from_samples,
    to_samples,
)


def tone(freq: float, seconds: float, rate: int, amplitude: float = 8000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def dominant_hz(pcm: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64)))
    return float(np.argmax(spectrum) * rate / len(pcm))


def snr_db(reference: np.ndarray, decoded: np.ndarray) -> float:
    noise = decoded.astype(np.float64) - reference
    return float(10 * np.log10(np.sum(reference.astype(np.float64) ** 2) / np.sum(noise**2)))


@pytest.mark.parametrize(
    ("law", "code", "value"),
    [
        # Reference points of ITU-T G.711's tables.
        ("ulaw", 0xFF, 0),
        ("ulaw", 0x7F, 0),
        ("ulaw", 0x80, 32124),
        ("ulaw", 0x00, -32124),
        ("ulaw", 0xFE, 8),
        ("ulaw", 0x7E, -8),
        ("alaw", 0xD5, 8),
        ("alaw", 0x55, -8),
        ("alaw", 0xAA, 32256),
        ("alaw", 0x2A, -32256),
    ],
)
def test_g711_expands_codes_as_the_standard_does(law: str, code: int, value: int) -> None:
    assert int(g711.decode(bytes([code]), law)[0]) == value


@pytest.mark.parametrize("law", ["ulaw", "alaw"])
def test_g711_encodes_every_code_value_back_to_itself(law: str) -> None:
    values = g711.decode(bytes(range(256)), law)
    again = g711.decode(g711.encode(values, law), law)
    assert np.array_equal(values, again)


@pytest.mark.parametrize("law", ["ulaw", "alaw"])
def test_g711_keeps_speech_level_audio_at_telephone_quality(law: str) -> None:
    pcm = tone(440, 0.5, 8000)
    decoded = g711.decode(g711.encode(pcm, law), law)
    assert len(decoded) == len(pcm)
    assert snr_db(pcm, decoded) > 30  # G.711 gives ~38 dB on a full-scale-ish tone
    assert snr_db(pcm, np.zeros_like(pcm)) < 1  # the measure itself can fail


def test_pcm16_is_little_endian_and_exact() -> None:
    pcm = np.array([0, 1, -1, 32767, -32768], dtype=np.int16)
    fmt = WireFormat("pcm16", 24000)
    data = from_samples(pcm, fmt)
    assert data[:4] == b"\x00\x00\x01\x00"
    assert np.array_equal(to_samples(data, fmt), pcm)
    with pytest.raises(WireAudioError):
        to_samples(data[:-1], fmt)


def test_decoder_resamples_24k_to_16k_across_chunks() -> None:
    decoder = WireDecoder(WireFormat("pcm16", 24000), 16000)
    pcm = tone(440, 1.0, 24000)
    data = from_samples(pcm, decoder.format)
    out = np.concatenate([decoder.decode(data[i : i + 4800]) for i in range(0, len(data), 4800)])
    assert abs(len(out) - 16000) < 100
    assert abs(dominant_hz(out[200:-200], 16000) - 440) < 5


def test_decoder_for_ulaw_yields_16k() -> None:
    fmt = WireFormat("ulaw", 8000)
    out = WireDecoder(fmt, 16000).decode(g711.encode(tone(300, 1.0, 8000), "ulaw"))
    assert abs(len(out) - 16000) < 100
    assert abs(dominant_hz(out[200:-200], 16000) - 300) < 5


def test_encoder_turns_48k_frames_into_the_wire_rate() -> None:
    encoder = WireEncoder(WireFormat("alaw", 8000))
    pcm = tone(500, 1.0, 48000)
    data = b"".join(encoder.encode(pcm[i : i + 960], 48000) for i in range(0, len(pcm), 960))
    data += encoder.flush()
    assert abs(len(data) - 8000) < 50  # one byte per 8 kHz sample
    decoded = g711.decode(data, "alaw")
    assert abs(dominant_hz(decoded[100:-100], 8000) - 500) < 5
