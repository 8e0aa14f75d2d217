"""Which part of a reply's text the user has heard, given how much of its audio was played.

Each synthesized clause covers a span of the reply text and a span of the reply audio.
At a playout position inside a clause, the heard text is estimated in proportion to the
audio played and snapped back to a word boundary, so the result is always a prefix of
the reply the LLM wrote and never contains a word that was not at least begun.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class _Span:
    text_start: int
    text_end: int
    audio_start_ms: float
    audio_end_ms: float


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

    def add_audio(self, text_span: tuple[int, int], duration_ms: float) -> None:
        """Record that `duration_ms` more audio speaks (part of) `text_span`."""
        start_ms = self.audio_ms
        self.audio_ms += duration_ms
        if self._spans and self._spans[-1].text_start == text_span[0]:
            last = self._spans.pop()
            start_ms = last.audio_start_ms
        self._spans.append(_Span(text_span[0], text_span[1], start_ms, self.audio_ms))

    def only_spoken(self) -> HeardText:
        """A copy holding only the text that has audio (a reply cut short by a fault)."""
        spoken = HeardText()
        spoken.text = self.heard(self.audio_ms)
        spoken._cursor = len(spoken.text)
        spoken._spans = [s for s in self._spans if s.text_end <= len(spoken.text)]
        spoken.audio_ms = self.audio_ms
        return spoken

    def heard(self, playout_ms: float) -> str:
        end = 0
        for span in self._spans:
            if playout_ms >= span.audio_end_ms:
                end = span.text_end
                continue
            if playout_ms > span.audio_start_ms:
                fraction = (playout_ms - span.audio_start_ms) / (
                    span.audio_end_ms - span.audio_start_ms
                )
                cut = span.text_start + int(fraction * (span.text_end - span.text_start))
                # Keep the word being spoken at the cut: its start was heard.
                while cut < span.text_end and not self.text[cut].isspace():
                    cut += 1
                end = max(end, cut)
            break
        return self.text[:end].rstrip()
