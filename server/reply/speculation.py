"""A reply begun at the user's pause, held until the pause proves to be the end of the turn.

When the words so far could be the whole turn, the reply starts at once but shows
nothing (`ResponseRun(held=True)`): the wait for the end of the turn and the reply's
first clause overlap. If the turn ends there, and the conversation is still the one the
reply was written for, it is released; if the user speaks on, it is dropped without a
trace. Only CPU is lost on pauses that were not the end.
"""

from __future__ import annotations

from collections.abc import Hashable

from server.reply.response import ResponseRun
from server.turns.timings import TurnTimings


class Speculation:
    def __init__(self) -> None:
        self._run: ResponseRun | None = None
        self._key: Hashable = None
        self.dropped = 0  # replies begun at earlier pauses of this turn, then dropped

    @property
    def pending(self) -> bool:
        return self._run is not None

    def new_turn(self) -> None:
        self.dropped = 0

    def begin(self, run: ResponseRun, key: Hashable) -> None:
        """Start `run` held; `key` names exactly what it answers (its `ReplySpec`: history,
        instructions, tools, voice…), so a reply written for another conversation is
        never released."""
        self.drop()
        self._run, self._key = run, key
        run.start()

    def drop(self) -> None:
        if self._run is not None:
            self._run.discard()
            self.dropped += 1
        self._run = self._key = None

    def adopt(self, key: Hashable, turn: TurnTimings) -> ResponseRun | None:
        """The held reply, released, if it answers `key`; else it is discarded."""
        run, held_for = self._run, self._key
        self._run = self._key = None
        if run is None:
            return None
        if held_for != key or not run.adopt_turn(turn) or not run.release():
            run.discard()
            return None
        return run
