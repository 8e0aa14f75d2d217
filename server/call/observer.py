"""Typed hooks for the views of a call: the operator monitor, the call log, metrics.

Observers are told what happened in the call's own terms (a reply finished, with its
status and timings; the user's words were transcribed), never handed wire events to
parse, so the event format can change without breaking them. Subclass and override
what you need; every hook defaults to doing nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ResponseOutcome:
    """How one reply ended: what the client saw in `response.done` and `hark.metrics`."""

    response_id: str
    status: str  # completed | cancelled | failed
    reason: str | None  # why it was cancelled: turn_detected | client_cancelled
    transcript: str  # what the user heard of it
    timings: dict[str, Any]  # TurnTimings.to_dict()
    audio_cut: bool  # its audio was playing and was cleared
    item_id: str = ""  # the assistant item it spoke
    fault: tuple[str, str] | None = None  # (stage, code) of the engine that failed it


class CallObserver:
    def speech_started(self) -> None:
        """The user started speaking (VAD onset)."""

    def playback_started(self, response_id: str) -> None:
        """The first audio frame of a reply went out."""

    def response_finished(self, outcome: ResponseOutcome) -> None:
        """A reply the client saw has ended (held replies never dropped are not reported)."""

    def user_transcript(self, item_id: str, text: str) -> None:
        """A user turn was transcribed (empty for noise)."""

    def error(self, code: str) -> None:
        """The call told its client about an error with this code."""

    def engine_fault(self, stage: str, code: str) -> None:
        """An engine (stt, llm, tts) failed in this call; the caller heard an apology."""

    def client_stats(self, stats: dict[str, Any]) -> None:
        """The client's own connection figures (`hark.client_stats`), validated."""
