"""A voice profile's reference clip from an uploaded file: decoded, checked, made uniform.

A cloning TTS copies whatever it is shown, level and room included, so every reference
is made alike: mono 24 kHz, the silence before and after the voice trimmed (100 ms kept),
the voice brought to -20 dBFS RMS with peaks under -1 dBFS. Uploads that cannot serve
are refused with a message saying why: not a WAV or Ogg file, shorter than 3 s or longer
than 15 s, silent, or with too little voice left once the silence is gone.
"""

from __future__ import annotations

import io

import av
import numpy as np

RATE = 24_000
MIN_SECONDS = 3.0
MAX_SECONDS = 15.0
MIN_VOICE_SECONDS = 1.0
FORMATS = ("wav", "ogg")
TARGET_RMS_DBFS = -20.0
PEAK_DBFS = -1.0
SILENT_DBFS = -50.0  # the loudest 20 ms quieter than this: nothing was recorded
TRIM_BELOW_PEAK_DB = 30.0  # frames this far under the loudest are silence
KEEP_S = 0.1
FRAME = RATE // 50


class VoiceSampleError(ValueError):
    """The upload cannot be a voice reference; the message says why."""


def _db(x: float) -> float:
    return 20 * np.log10(max(x, 1e-9))


def decode(data: bytes) -> np.ndarray:
    """The file's audio as float32 mono at 24 kHz."""
    try:
        container = av.open(io.BytesIO(data), "r")
    except (av.FFmpegError, ValueError, OSError) as exc:
        raise VoiceSampleError("The file is not audio (send a WAV or Ogg file)") from exc
    with container:
        names = set(container.format.name.split(","))
        if not names & set(FORMATS) or not container.streams.audio:
            raise VoiceSampleError(f"The file is {container.format.name}, not WAV or Ogg audio")
        resampler = av.AudioResampler(format="flt", layout="mono", rate=RATE)
        parts = []
        seconds = 0.0
        try:
            for frame in container.decode(audio=0):
                for out in resampler.resample(frame):
                    parts.append(out.to_ndarray().reshape(-1))
                    seconds += out.samples / RATE
                if seconds > MAX_SECONDS + 1:
                    break  # long enough to refuse; decode no more
            for out in resampler.resample(None):
                parts.append(out.to_ndarray().reshape(-1))
        except (av.FFmpegError, ValueError) as exc:
            raise VoiceSampleError(f"The audio cannot be decoded: {exc}") from exc
    if not parts:
        raise VoiceSampleError("The file holds no audio")
    return np.concatenate(parts).astype(np.float32)


def _frame_rms(audio: np.ndarray) -> np.ndarray:
    usable = len(audio) // FRAME * FRAME
    frames = audio[:usable].reshape(-1, FRAME)
    return np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1))


def prepare(data: bytes) -> np.ndarray:
    """The reference clip (int16, mono, 24 kHz) from an uploaded file's bytes."""
    audio = decode(data)
    seconds = len(audio) / RATE
    if seconds < MIN_SECONDS:
        raise VoiceSampleError(f"The audio lasts {seconds:.1f} s; send {MIN_SECONDS:g}-15 s")
    if seconds > MAX_SECONDS:
        raise VoiceSampleError(f"The audio lasts over {MAX_SECONDS:g} s; send 3-{MAX_SECONDS:g} s")
    rms = _frame_rms(audio)
    loudest = float(rms.max()) if len(rms) else 0.0
    if _db(loudest) < SILENT_DBFS:
        raise VoiceSampleError("The audio is silent")
    voiced = np.flatnonzero(rms >= loudest * 10 ** (-TRIM_BELOW_PEAK_DB / 20))
    keep = int(KEEP_S * RATE)
    start = max(0, int(voiced[0]) * FRAME - keep)
    end = min(len(audio), (int(voiced[-1]) + 1) * FRAME + keep)
    audio = audio[start:end]
    if (end - start) / RATE < MIN_VOICE_SECONDS:
        raise VoiceSampleError(
            f"Less than {MIN_VOICE_SECONDS:g} s of voice once the silence is trimmed"
        )
    level = float(np.sqrt(np.mean(np.square(rms[voiced]))))
    gain = 10 ** (TARGET_RMS_DBFS / 20) / max(level, 1e-9)
    peak = float(np.abs(audio).max()) * gain
    ceiling = 10 ** (PEAK_DBFS / 20)
    if peak > ceiling:
        gain *= ceiling / peak
    return np.clip(audio * gain * 32767, -32768, 32767).astype(np.int16)
