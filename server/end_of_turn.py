"""Semantic end-of-turn: how long to wait in a pause, judged by the words said so far.

OpenAI's `semantic_vad` waits less after "What's the capital of France?" than after
"What's the capital of". Hark does it on CPU with the transcript the session already
makes when a pause begins (see `server.turn_taking`): a few rules about how English
utterances end. It is a heuristic, not a model; its limits: it knows English only,
trusts Whisper's punctuation, and cannot hear intonation.

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
    very more most less like um uh er erm hmm let me i i'm we you they it's there's
    just really also not no any some""".split()
)
_WORD = re.compile(r"[a-z']+")


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
    "medium": Waits(complete=250, unsure=700, incomplete=2500),
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
    if words[-1] in _DANGLING:
        return "incomplete"
    if stripped.endswith(("?", ".", "!")):
        return "complete" if len(words) >= 2 else "unsure"
    return "unsure"


def max_wait_ms(eagerness: Eagerness) -> int:
    """The longest pause that can ever end a turn: the segmenter's own silence limit."""
    return WAITS[eagerness].incomplete
