"""Which part of a reply's text the user has heard, given how much of its audio was played.

Each synthesized clause covers a span of the reply text and a span of the reply audio.
The heard text ends at the last word whose audio had fully played at the playout
position: a word only begun is not heard. Where the TTS said where each word ends
(`TimedAudio.words`: Piper), those ends are used; otherwise a word's end is estimated in
proportion to the characters of its clause. The result is always a prefix of the reply
the LLM wrote, cut at a word's end.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from server.engines.word_timing import token_spans


@dataclass
class _Span:
    text_start: int
    text_end: int
    audio_start_ms: float
    audio_end_ms: float
    # (text offset just past a word, ms into the reply audio where it ends), if timed
    word_ends: list[tuple[int, float]] = field(default_factory=list)
    timed: bool = False


class HeardText:
    def __init__(self) -> None:
        self.text = ""
        self._spans: list[_Span] = []
        self._cursor = 0
        self.audio_ms = 0.0

    def add_text(self, delta: str) -> None:
        self.text += delta

    def locate(self, chunk: str) -> tuple[int, int]:
        """Text span of `chunk` (a stripped clause of the text), searched from the last one."""
        start = self.text.find(chunk, self._cursor)
        if start < 0:  # the splitter normalised whitespace: fall back to the cursor
            start = self._cursor
            end = min(len(self.text), start + len(chunk))
        else:
            end = start + len(chunk)
        self._cursor = end
        return start, end

    def add_audio(
        self,
        text_span: tuple[int, int],
        duration_ms: float,
        word_ends_ms: Sequence[tuple[int, float]] | None = None,
    ) -> None:
        """Record that `duration_ms` more audio speaks (part of) `text_span`.

        `word_ends_ms`: (n, ms) for each word that ends in this audio, n counting the
        span's whitespace-separated words from 0 and ms from the start of this audio;
        None where the TTS gave no timings."""
        start_ms = self.audio_ms
        self.audio_ms += duration_ms
        span = _Span(text_span[0], text_span[1], start_ms, self.audio_ms)
        if self._spans and self._spans[-1].text_start == text_span[0]:
            span = self._spans[-1]
            span.audio_end_ms = self.audio_ms
        else:
            self._spans.append(span)
        if word_ends_ms is None:
            return
        words = token_spans(self.text[span.text_start : span.text_end])
        if not span.timed and span.word_ends == [] and start_ms > span.audio_start_ms:
            return  # earlier audio of this span came with no timings: stay proportional
        span.timed = True
        for n, ms in word_ends_ms:
            if 0 <= n < len(words):
                end = span.text_start + words[n][1]
                span.word_ends.append((end, min(start_ms + ms, self.audio_ms)))

    def only_spoken(self) -> HeardText:
        """A copy holding only the text that has audio (a reply cut short by a fault)."""
        spoken = HeardText()
        spoken.text = self.heard(self.audio_ms)
        spoken._cursor = len(spoken.text)
        spoken._spans = [
            replace(s, word_ends=list(s.word_ends))
            for s in self._spans
            if s.text_end <= len(spoken.text)
        ]
        spoken.audio_ms = self.audio_ms
        return spoken

    def heard(self, playout_ms: float) -> str:
        """The reply up to the last word whose audio ended by `playout_ms`."""
        return self.cut(playout_ms)[0]

    def cut(self, playout_ms: float) -> tuple[str, float]:
        """`heard(playout_ms)` and where its last word ends in the reply's audio (ms)."""
        end, end_ms = 0, 0.0
        for span in self._spans:
            if playout_ms >= span.audio_end_ms:
                end, end_ms = span.text_end, span.audio_end_ms
                continue
            for word_end, ms in self._word_ends(span):
                if ms <= playout_ms and word_end > end:
                    end, end_ms = word_end, ms
            break
        return self.text[:end].rstrip(), end_ms

    def _word_ends(self, span: _Span) -> list[tuple[int, float]]:
        if span.timed:
            return span.word_ends
        # No timings: each word ends in proportion to its characters in the clause.
        length = max(span.text_end - span.text_start, 1)
        duration = span.audio_end_ms - span.audio_start_ms
        words = token_spans(self.text[span.text_start : span.text_end])
        return [
            (span.text_start + b, span.audio_start_ms + duration * b / length) for _, b in words
        ]
