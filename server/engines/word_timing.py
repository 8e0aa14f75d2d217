"""Where each word of a synthesized text ends in its audio, for heard-only transcripts.

A barge-in keeps only the words the user fully heard, so the reply's text must be cut at
a word's end in the audio, not in proportion to a clause. An engine that knows its word
timings (Piper, from its duration predictor: `server.engines.piper_words`) yields
`TimedAudio` chunks from `synthesize_words`; for any other engine `timed_audio` wraps its
plain chunks with no timings, and the heard text falls back to an estimate in proportion
to the characters (`HeardText`).

Words are the text's whitespace-separated tokens, counted from 0 in the text the engine
was given, so a caller maps them back to its own text without trusting char offsets.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass

import numpy as np

from server.engines.base import TextToSpeech

_TOKEN = re.compile(r"\S+")


@dataclass(frozen=True)
class WordEnd:
    """The `word`-th token of the synthesized text ends `sample` samples into its chunk."""

    word: int
    sample: int


@dataclass(frozen=True)
class TimedAudio:
    """A chunk of TTS audio and the words that end in it (`None`: the engine can't tell)."""

    pcm: np.ndarray
    words: tuple[WordEnd, ...] | None = None

    def shifted(self, samples: int, length: int) -> tuple[WordEnd, ...] | None:
        """The word ends after dropping `samples` from the front and keeping `length`."""
        if self.words is None:
            return None
        return tuple(WordEnd(w.word, min(max(w.sample - samples, 0), length)) for w in self.words)


def token_spans(text: str) -> list[tuple[int, int]]:
    """The (start, end) offsets of each whitespace-separated word of `text`."""
    return [m.span() for m in _TOKEN.finditer(text)]


def proportional_ends(text: str, samples: int, first_word: int = 0) -> tuple[WordEnd, ...]:
    """Each word of `text` ending in proportion to its characters in `samples` of audio:
    the estimate for an engine with no alignment (numbered from `first_word`)."""
    size = max(len(text), 1)
    return tuple(
        WordEnd(first_word + n, samples * end // size)
        for n, (_, end) in enumerate(token_spans(text))
    )


async def timed_audio(
    tts: TextToSpeech, text: str, voice: str | None, speed: float
) -> AsyncIterator[TimedAudio]:
    """`tts`'s audio for `text` as `TimedAudio`, with word ends where the engine has them."""
    words = getattr(tts, "synthesize_words", None)
    if words is not None:
        async with aclosing(words(text, voice, speed)) as timed:
            async for chunk in timed:
                yield chunk
        return
    async with aclosing(tts.synthesize(text, voice, speed)) as plain:
        async for pcm in plain:
            yield TimedAudio(pcm)
