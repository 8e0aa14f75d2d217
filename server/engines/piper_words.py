"""Word ends in Piper's audio, from the voice's own phoneme durations.

Piper's VITS model decides how many audio frames each phoneme gets (its `w_ceil` tensor;
`PiperVoice.load(include_alignments=True)` exposes it, patching the model in memory with
the `onnx` package), so the audio has an exact phoneme timeline at no extra cost. What
is left is to say which phonemes belong to which word of the text: espeak-ng joins some
words ("in the" is one phoneme word, ɪnðə) and splits others ("25" is two), so each
word is phonemized alone and that sequence aligned with the sentence's (difflib on the
sounds, stress marks and punctuation left out). A word ends with its last sound's frames.
A word the alignment cannot place is interpolated between its neighbours.
"""

from __future__ import annotations

import difflib
import unicodedata
from collections.abc import Sequence

import numpy as np
from piper import PiperVoice

from server.engines.word_timing import WordEnd, token_spans

# Phoneme symbols that are not sounds of their own: word gaps, punctuation, stress.
_NOT_SOUNDS = set(" \t\n.,;:!?¡¿\"'()[]-—–…ˈˌ")


def _sounds(phonemes: Sequence[str]) -> list[int]:
    return [
        i
        for i, p in enumerate(phonemes)
        if p not in _NOT_SOUNDS and not unicodedata.combining(p[:1] or " ")
    ]


class WordPlan:
    """For one text: the sentence (Piper chunk) and phoneme at which each word ends."""

    def __init__(self, voice: PiperVoice, text: str) -> None:
        self.sentences = [s for s in voice.phonemize(text) if s]
        flat: list[tuple[int, int]] = []  # (sentence, phoneme index) of each sound
        for n, phonemes in enumerate(self.sentences):
            flat.extend((n, i) for i in _sounds(phonemes))
        tokens = [text[a:b] for a, b in token_spans(text)]
        ends = _align(voice, tokens, [self.sentences[n][i] for n, i in flat])
        # word → (sentence, phoneme index of its last sound)
        self.ends: list[tuple[int, int] | None] = [flat[e] if e >= 0 else None for e in ends]

    def word_ends(self, sentence: int, alignments: Sequence[int] | None) -> tuple[WordEnd, ...]:
        """The words ending in `sentence`, given the samples of each of its phonemes in
        Piper's alignment order (BOS, the phonemes, EOS)."""
        if alignments is None:
            return ()
        ends = np.cumsum(np.asarray(alignments, dtype=np.int64))
        out = []
        for word, where in enumerate(self.ends):
            if where is not None and where[0] == sentence and where[1] + 1 < len(ends):
                out.append(WordEnd(word, int(ends[where[1] + 1])))  # +1: past the BOS
        return tuple(out)


def _align(voice: PiperVoice, tokens: list[str], sentence: list[str]) -> list[int]:
    """Index into `sentence` (its sounds) of each token's last sound; -1 if none."""
    own: list[list[str]] = []
    for token in tokens:
        phonemes = [p for s in voice.phonemize(token) for p in s]
        own.append([phonemes[i] for i in _sounds(phonemes)])
    joined = [p for sounds in own for p in sounds]
    at = [-1] * len(joined)
    matcher = difflib.SequenceMatcher(None, joined, sentence, autojunk=False)
    for a, b, size in matcher.get_matching_blocks():
        for k in range(size):
            at[a + k] = b + k
    ends: list[int | None] = []
    start = 0
    for sounds in own:
        matched = [at[k] for k in range(start, start + len(sounds)) if at[k] >= 0]
        start += len(sounds)
        ends.append(max(matched) if matched else None if sounds else -2)
    return _fill(ends, [len(s) for s in own], len(sentence))


def _fill(ends: list[int | None], sizes: list[int], total: int) -> list[int]:
    """Unplaced words (None) between their placed neighbours in proportion to their
    sounds; a word with no sounds (-2: a dash) ends with the word before it (-1 if
    none); then made monotonic."""
    out: list[int] = []
    last, i, n = -1, 0, len(ends)
    while i < n:
        if ends[i] is None:
            j = i
            while j < n and ends[j] is None:
                j += 1
            k = j
            while k < n and ends[k] == -2:
                k += 1
            placed = k < n and (ends[k] or 0) >= 0
            after = int(ends[k] or 0) if placed else total - 1
            weight = sum(sizes[i:j]) + (sizes[k] if placed else 0)
            base, run = last, 0
            for m in range(i, j):
                run += sizes[m]
                step = round((after - base) * run / max(weight, 1))
                last = max(last, min(base + step, total - 1))
                out.append(last)
            i = j
            continue
        end = ends[i]
        last = max(last, min(last if end == -2 else end, total - 1))
        out.append(last)
        i += 1
    return out
