"""Cut a streamed LLM reply into speakable chunks as soon as each is complete.

TTS cannot start before it has a phrase to say, and voice-to-voice latency is mostly the
wait for that first phrase. So a chunk ends at a sentence end, and also at a clause
boundary (, ; : —) once enough text is pending; the first chunk of a reply may be cut
shorter still, at a shorter clause or before a word that opens a phrase ("of", "and",
"because"…) once four words are pending, and with `first_words` after that many words
whatever follows, unless the last one leans on the next ("the", "is", "of"…), so the
first audio starts early: every word the LLM must write first costs ~40-50 ms on CPU, and
Piper's time to first audio grows with the chunk (~100 ms for four words, ~200 ms for
nine, here).
Cuts happen only where the text already shows what follows, so a "3." never splits
"3.5" and "Dr." never ends a sentence.
"""

from __future__ import annotations

import re

# Words whose trailing "." rarely ends a sentence; cutting there would make TTS pause.
ABBREVIATIONS = frozenset(
    {
        "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "mt", "ft", "vs", "no", "nos",
        "approx", "dept", "est", "fig", "gen", "gov", "inc", "ltd", "co", "corp", "jan",
        "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec",
        "capt", "col", "lt", "sgt", "rev", "vol", "ch", "p", "pp", "cf", "al",
    }
)  # fmt: skip

_CLOSERS = "\"'”’)]"
_CLOSER = f"[{re.escape(_CLOSERS)}]"
# A sentence end: terminal punctuation (plus closing quotes/brackets) before whitespace.
_SENTENCE_END = re.compile(rf"[.!?…]+{_CLOSER}*(?=\s)")
# A clause end: , ; : before whitespace (so "1,000" and "10:30" stay whole), an em dash,
# or a spaced en dash (an unspaced one is a range: "1990–2000").
_CLAUSE_END = re.compile(rf"[,;:]{_CLOSER}*(?=\s)|\s*—\s?|\s+–\s")
_WHITESPACE = re.compile(r"\s")
# Words that open a new phrase: a first chunk may end just before one ("Paris is the
# capital | of France."), so a reply's first audio need not wait for its first comma.
PHRASE_STARTERS = frozenset(
    """of in on at to for with from by about into like than as and but or so because
    that which who whose where when while if after before since until during""".split()
)
_WORD_AHEAD = re.compile(r"\s+([A-Za-z']+)(?=\s)")
# Words that lean on the next one: a first chunk never ends on one ("Paris is | the…"
# would be said as a finished sentence, "is" falling).
LEANING = frozenset(
    """a an the of in on at to for with from by about into like than as and but or nor so
    because that which who whose where when while if is are was were be been am do does
    did has have had can could would should will shall may might must not no very my your
    his her its our their this these those there it's i'm i we you he she they it what how
    why some any each every more most less few many much own same such just also""".split()
)
_NEXT_WORD = re.compile(r"\s+\S")


class SentenceSplitter:
    """Buffer text deltas; hand back chunks ready to speak, stripped and never empty.

    Joining every chunk of a reply with single spaces reproduces the reply, whitespace
    aside. `flush()` ends the reply and resets the splitter for the next one.
    """

    def __init__(
        self,
        clause_chars: int = 40,
        first_clause_chars: int = 20,
        max_chars: int = 160,
        first_phrase_words: int = 4,
        first_words: int = 0,
    ) -> None:
        """`first_words` > 0: the first chunk may end after that many words wherever a
        next word has begun (not after a `LEANING` word or an abbreviation)."""
        self.clause_chars = clause_chars
        self.first_clause_chars = first_clause_chars
        self.max_chars = max_chars
        self.first_phrase_words = first_phrase_words
        self.first_words = first_words
        self._pending = ""
        self._first = True

    def push(self, delta: str) -> list[str]:
        self._pending += delta
        return self._drain(final=False)

    def flush(self) -> list[str]:
        chunks = self._drain(final=True)
        rest = self._pending.strip()
        if rest:
            chunks.append(rest)
        self._pending = ""
        self._first = True
        return chunks

    def _drain(self, final: bool) -> list[str]:
        chunks: list[str] = []
        while (cut := self._find_cut(final)) is not None:
            chunk = self._pending[:cut].strip()
            self._pending = self._pending[cut:]
            if chunk:
                chunks.append(chunk)
                self._first = False
        return chunks

    def _find_cut(self, final: bool) -> int | None:
        """Index just after the earliest safe cut in the pending text, if any."""
        text = self._pending
        min_clause = self.first_clause_chars if self._first else self.clause_chars
        sentence = self._sentence_end(text, final)
        clause = next(
            (
                m.end()
                for m in _CLAUSE_END.finditer(text)
                if len(text[: m.end()].strip()) >= min_clause
            ),
            None,
        )
        phrase = self._phrase_start(text) if self._first else None
        words = self._after_words(text) if self._first else None
        cuts = [c for c in (sentence, clause, phrase, words) if c is not None]
        if cuts:
            return min(cuts)
        if len(text) > self.max_chars:
            # A run-on with no punctuation: cut before the last (possibly partial) word.
            space = max((m.start() for m in _WHITESPACE.finditer(text.rstrip())), default=0)
            return space or None
        return None

    def _phrase_start(self, text: str) -> int | None:
        """Where a new phrase starts after at least `first_phrase_words` words: just
        before a whole word from PHRASE_STARTERS (its end must have arrived, so "of" is
        not "often")."""
        if self.first_phrase_words <= 0:
            return None
        for match in _WORD_AHEAD.finditer(text):
            if match.group(1).lower() not in PHRASE_STARTERS:
                continue
            if len(text[: match.start()].split()) >= self.first_phrase_words:
                return match.start()
        return None

    def _after_words(self, text: str) -> int | None:
        """Where the first chunk may end after `first_words` words: at the space before a
        word that has begun (so the last kept word is whole), after a word that does not
        lean on the next."""
        if self.first_words <= 0:
            return None
        for match in _NEXT_WORD.finditer(text):
            kept = text[: match.start()].split()
            if len(kept) < self.first_words:
                continue
            last = kept[-1].strip("\"'“”‘’()[]").lower()
            if last and last not in LEANING and not _is_abbreviation(text[: match.start()]):
                return match.start()
        return None

    @staticmethod
    def _sentence_end(text: str, final: bool) -> int | None:
        for match in _SENTENCE_END.finditer(text):
            punct = match.group().rstrip(_CLOSERS)
            if punct == "." and _is_abbreviation(text[: match.start()]):
                continue
            following = text[match.end() :].lstrip()
            if not following:
                # The next word has not arrived: "e.g. the" must not be cut at "e.g.".
                return match.end() if final else None
            if punct == "." and following[0].islower():
                continue  # a lower-case word after "." means it was not a sentence end
            return match.end()
        return None


def _is_abbreviation(before: str) -> bool:
    words = before.split()
    if not words:
        return False
    word = words[-1].lstrip("\"'“‘([")
    if len(word) == 1 and word.isalpha() and word.isupper():
        return True  # an initial, as in "J. K. Rowling"
    return "." in word or word.lower() in ABBREVIATIONS  # "e.g", "U.S", "Dr"
