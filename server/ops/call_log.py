"""One structured log line per step of a call: created (by the registry), connected, each
turn's timings, ended with its reason. `call_id` ties them together.

Turn timings are those of the session's `hark.metrics` event (`ResponseOutcome.timings`).
What the user and the assistant said is logged only with `HARK_LOG_TRANSCRIPTS=1`; audio
never is.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from server.call.observer import CallObserver, ResponseOutcome
from server.ops.log_format import log_event

if TYPE_CHECKING:
    from server.call.session import RealtimeSession
    from server.calls.manager import CallManager

log = logging.getLogger("hark.call")


class CallLog:
    def __init__(self, *, transcripts: bool) -> None:
        self.transcripts = transcripts

    def attach(self, calls: CallManager) -> None:
        calls.on_call_started.append(self._started)
        calls.on_call_ended.append(self._ended)

    def _started(self, session: RealtimeSession) -> None:
        session.observers.append(_TurnLog(session.call_id, self.transcripts))

    def connected(self, session: RealtimeSession) -> None:
        log_event(
            log,
            "call.connected",
            call_id=session.call_id,
            after_s=round(time.time() - session.created_at, 3),
        )

    def _ended(self, session: RealtimeSession) -> None:
        log_event(
            log,
            "call.ended",
            call_id=session.call_id,
            reason=session.close_reason,
            duration_s=round(time.time() - session.created_at, 3),
        )


class _TurnLog(CallObserver):
    def __init__(self, call_id: str, transcripts: bool) -> None:
        self.call_id = call_id
        self.transcripts = transcripts

    def user_transcript(self, item_id: str, text: str) -> None:
        if self.transcripts:
            log_event(log, "call.transcript", call_id=self.call_id, role="user", text=text)

    def response_finished(self, outcome: ResponseOutcome) -> None:
        if self.transcripts:
            log_event(
                log,
                "call.transcript",
                call_id=self.call_id,
                role="assistant",
                text=outcome.transcript,
            )
        log_event(
            log,
            "call.turn",
            call_id=self.call_id,
            response_id=outcome.response_id,
            timings=outcome.timings,
        )
