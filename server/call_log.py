"""One structured log line per step of a call: created (by the registry), connected, each
turn's timings, ended with its reason. `call_id` ties them together.

Turn timings come from the session's own `hark.metrics` event. What the user and the
assistant said is logged only with `HARK_LOG_TRANSCRIPTS=1`; audio never is.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from server.structured_log import log_event

if TYPE_CHECKING:
    from server.calls import CallManager
    from server.session import RealtimeSession

log = logging.getLogger("hark.call")

TRANSCRIPT_EVENTS = {
    "conversation.item.input_audio_transcription.completed": "user",
    "response.output_audio_transcript.done": "assistant",
}


class CallLog:
    def __init__(self, *, transcripts: bool) -> None:
        self.transcripts = transcripts

    def attach(self, calls: CallManager) -> None:
        calls.on_call_started.append(self._started)
        calls.on_call_ended.append(self._ended)

    def _started(self, session: RealtimeSession) -> None:
        call_id = session.call_id

        def on_event(event: dict[str, Any]) -> None:
            kind = event.get("type")
            if kind == "hark.metrics":
                log_event(
                    log,
                    "call.turn",
                    call_id=call_id,
                    response_id=event.get("response_id"),
                    timings=event.get("turn"),
                )
            elif self.transcripts and kind in TRANSCRIPT_EVENTS:
                log_event(
                    log,
                    "call.transcript",
                    call_id=call_id,
                    role=TRANSCRIPT_EVENTS[str(kind)],
                    text=event.get("transcript"),
                )

        session.listeners.append(on_event)

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
