"""What the turn-taking benchmark needs from a peer, whatever its protocol.

A peer is started once (`running()`), then opens one call per trial. A call carries the
acoustic client (a microphone it sends, a recorder of what it receives) and, after the
trial, the peer's own account of what happened (`Signals`): which user transcripts it
committed, when it started answering, when it cancelled a reply. Acoustic numbers come
from the client alone; the signals only decide what the ear cannot (was that reply
cancelled, or paused and resumed?).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Protocol

from tests.acoustic import ReplyRecorder, ScriptedMicrophone


@dataclass
class Signals:
    """The peer's own events during a call; times are `time.monotonic()`."""

    transcripts: list[tuple[float, str]] = field(default_factory=list)  # committed user turns
    responses: list[float] = field(default_factory=list)  # a reply started being generated
    cancels: list[float] = field(default_factory=list)  # a reply was cancelled (barge-in)
    # (arrival, ms): the server's own barge-in stop time, if it reports one
    barge_in_stop_ms: list[tuple[float, float]] = field(default_factory=list)
    # True if each transcript is a whole committed user turn, False if a VAD segment
    transcripts_are_turns: bool = True
    raw: list[dict[str, Any]] = field(default_factory=list)

    def cancelled_after(self, t: float) -> bool:
        return any(at >= t for at in self.cancels)

    def first_cancel_after(self, t: float) -> float | None:
        return min((at for at in self.cancels if at >= t), default=None)


class Call(Protocol):
    mic: ScriptedMicrophone
    ear: ReplyRecorder

    async def signals(self) -> Signals: ...

    async def hangup(self) -> None: ...


class Peer(Protocol):
    name: str
    info: dict[str, Any]

    def running(self) -> contextlib.AbstractContextManager[Peer]: ...

    async def call(self, mic: ScriptedMicrophone) -> Call: ...
