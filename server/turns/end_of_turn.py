"""Semantic end-of-turn: how long to wait in a pause, judged by the words said so far.

OpenAI's `semantic_vad` waits less after "What's the capital of France?" than after
"What's the capital of". Hark does it on CPU with the transcript the session already
makes when a pause begins (see `server.turns.turn_taking`): a few rules about how English
utterances end, and what shape a finished question has (Whisper writes "Which
animal?" for the first half of "Which animal says moo?"). It is a heuristic, not a
model; its limits: it knows English only, trusts Whisper's final punctuation for
statements, and cannot hear intonation.

Eagerness sets the waits: `high` answers soonest, `low` lets people think aloud.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Eagerness = Literal["low", "medium", "high", "auto"]
Completeness = Literal["complete", "unsure", "incomplete"]
EAGERNESS: tuple[Eagerness, ...] = ("low", "medium", "high", "auto")

# Words after which an English utterance almost never ends.
_DANGLING = frozenset(
    """a an the of to for from with without in on at by about into onto over under
    and or but nor so because if when while than as that which who whose whom where
    is are was were be been am do does did can could would should will shall may might
    must have has had my your his her its our their this these those what how why
    very more most less like um uh er erm hmm let me i i'm we they it's there's
    just really also not no any some""".split()
)
_WORD = re.compile(r"[a-z']+")
_QUESTION_WORDS = frozenset("what which who whom whose where when why how".split())
# A question needs a verb; these are the ones short questions use (plus any "-ed" word).
_VERBS = frozenset(
    """is are was were be am do does did can could would should will shall may might must
    have has had isn't aren't wasn't don't doesn't didn't can't won't
    go goes went come came get got make made say says said know knows knew mean means
    happen happens happened work works live lives like likes want wants win won wrote
    write writes play plays eat eats take took see saw think thinks need needs cost costs
    call called""".split()
)
# Words a finished question may end on ("what does a spider have?", "where from?").
_STRANDED = frozenset(
    """have has had do does did like be been is are was were am can could would should will
    about from for with to me you it them us""".split()
)
# Requests that are finished once their object is said: "tell me about the moon".
_IMPERATIVES = frozenset("tell describe explain give show name list define teach recommend".split())
# Verbless questions that are finished: "what about tomorrow?", "which one?".
_NO_VERB_NEEDED = frozenset("about if else now then not so one ones for".split())
# Nouns that ask for an "of …" ("the capital", "the name"): a question ending in one
# is probably going on.
_RELATIONAL = frozenset(
    """capital name population meaning size colour color number price height length
    weight distance difference age speed temperature value area sum title author
    rest end beginning middle top bottom part kind type plural opposite definition""".split()
)


@dataclass(frozen=True)
class Waits:
    """Silence (ms) to wait before ending the turn, by how finished the words look."""

    complete: int
    unsure: int
    incomplete: int

    def for_text(self, text: str) -> int:
        return getattr(self, completeness(text))


WAITS: dict[Eagerness, Waits] = {
    "high": Waits(complete=200, unsure=450, incomplete=1200),
    "medium": Waits(complete=250, unsure=900, incomplete=2500),
    "low": Waits(complete=500, unsure=1200, incomplete=4000),
}
WAITS["auto"] = WAITS["medium"]


def completeness(text: str) -> Completeness:
    """Does `text` (a Whisper transcript of the turn so far) sound like a finished turn?"""
    stripped = text.strip()
    words = _WORD.findall(stripped.lower())
    if not words:
        return "unsure"
    if stripped.endswith(("...", "…", ",", "-", "—", ";", ":")):
        return "incomplete"
    wh_question = words[0] in _QUESTION_WORDS or words[0].split("'")[0] in _QUESTION_WORDS
    question = wh_question or words[0] in _VERBS
    punctuated = stripped.endswith(("?", ".", "!"))
    # tiny.en often leaves a finished question bare ("who wrote Romeo and Juliet"): for a
    # question, no punctuation reads like "?", whose shape is judged below anyway.
    asks = question and (stripped.endswith("?") or not punctuated)
    stranded = asks and words[-1] in _STRANDED
    if words[-1] in _DANGLING and not (stranded and _has_verb(words[:-1])):
        return "unsure" if len(words) == 1 and wh_question else "incomplete"
    if len(words) >= 2 and words[-2] == "the" and words[-1].endswith("est"):
        return "incomplete"  # "what is the largest" … planet
    if wh_question:
        shape = _question_shape(words)
        if shape is not None:
            return shape
        if not punctuated:
            return "complete"  # a wh-question with its verb and object: "who wrote Romeo…"
    elif question and not punctuated:
        return "complete" if len(words) >= 4 else "unsure"  # "is it going to rain"
    elif words[0] in _IMPERATIVES and not punctuated and len(words) >= 3:
        return "complete"  # "describe a forest", "tell me about the moon"
    if punctuated:
        return "complete" if len(words) >= 2 else "unsure"
    return "unsure"


def _has_verb(words: list[str]) -> bool:
    """A verb among `words`; the second word of a wh-question ending in "-s" counts too
    ("what makes rain", and Whisper's "what colors the sky")."""
    third_person = len(words) >= 3 and words[1].endswith("s") and not words[1].endswith("ss")
    return "'" in words[0] or third_person or any(w in _VERBS or w.endswith("ed") for w in words)


def _question_shape(words: list[str]) -> Completeness | None:
    """Whisper puts "?" after any half question; judge its shape instead."""
    if len(words) == 1:
        return "unsure"  # "why?"
    if not _has_verb(words) and words[1] not in _NO_VERB_NEEDED:
        return "incomplete"  # "how many legs", "which animal"
    if len(words) == 2 or words[-1] in _RELATIONAL:
        return "unsure"  # "who wrote", "what is the capital"
    return None


def max_wait_ms(eagerness: Eagerness) -> int:
    """The longest pause that can ever end a turn: the segmenter's own silence limit."""
    return WAITS[eagerness].incomplete
