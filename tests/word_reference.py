"""A reference for word timings: where Whisper (tiny.en, packaged) hears each word end.

Independent of the TTS: it listens to the audio. Its own ends are off by tens of ms
(`tests/bench/word_timing.py` reports the spread), so comparisons allow for that.
"""

from __future__ import annotations

import difflib
import functools
import re

import numpy as np
from faster_whisper import WhisperModel

from media.resample import Resampler
from server.engines.faster_whisper_stt import packaged_model


@functools.cache
def whisper() -> WhisperModel:
    return WhisperModel(str(packaged_model()), device="cpu", compute_type="int8")


def norm(word: str) -> str:
    return re.sub(r"[^a-z0-9']", "", word.lower())


def heard_words(audio: np.ndarray, rate: int) -> list[tuple[str, float]]:
    """(word, end in ms) of each word Whisper hears in int16 mono `audio`."""
    pcm16 = Resampler(16000).pcm(audio, rate) if rate != 16000 else audio
    segments, _ = whisper().transcribe(
        pcm16.astype(np.float32) / 32768, language="en", beam_size=1, word_timestamps=True
    )
    return [(norm(w.word), float(w.end) * 1000) for s in segments for w in s.words or []]


def matched(text_words: list[str], heard: list[tuple[str, float]]) -> dict[int, float]:
    """For each word of the text Whisper heard as the same word: its end (ms) per Whisper."""
    ours = [norm(w) for w in text_words]
    theirs = [w for w, _ in heard]
    out: dict[int, float] = {}
    matcher = difflib.SequenceMatcher(None, ours, theirs, autojunk=False)
    for a, b, size in matcher.get_matching_blocks():
        for k in range(size):
            out[a + k] = heard[b + k][1]
    return out
