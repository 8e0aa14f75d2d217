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
    # (when, started): a reply that began at `started` was cancelled at `when`
    cancels: list[tuple[float, float]] = field(default_factory=list)
    # (arrival, ms): the server's own barge-in stop time, if it reports one
    barge_in_stop_ms: list[tuple[float, float]] = field(default_factory=list)
    # the peer's own latency breakdown of each reply, where it reports one (Hark's hark.metrics)
    metrics: list[dict[str, Any]] = field(default_factory=list)
    # True if each transcript is a whole committed user turn, False if a VAD segment
    transcripts_are_turns: bool = True
    raw: list[dict[str, Any]] = field(default_factory=list)

    def cancelled_after(self, t: float) -> bool:
        return any(when >= t for when, _ in self.cancels)

    def reply_cancel(self, playing_at: float) -> float | None:
        """When the reply under way at `playing_at` (begun before it) was cancelled, if it
        was, by something at or after `playing_at`; later replies' cancels don't count."""
        return min(
            (when for when, started in self.cancels if started <= playing_at <= when + 0.05),
            default=None,
        )


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
