"""Where the time of one turn goes, from the end of the user's speech to the first reply frame.

All stamps are `time.monotonic()` on the server. The user's speech ended `silence_ms`
before the VAD could be sure of it, so that wait is part of what the user feels and is
reported first. Sent to clients as the `hark.metrics` event after each response.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


def now() -> float:
    return time.monotonic()


@dataclass
class TurnTimings:
    speech_end: float | None = None  # estimated wall time the user stopped speaking
    speech_stopped: float | None = None  # the VAD decided the turn ended
    stt_done: float | None = None
    response_start: float = field(default_factory=now)
    llm_first_token: float | None = None
    first_clause: float | None = None
    tts_first_audio: float | None = None
    first_frame_sent: float | None = None
    stt_preemptive: bool = False  # the transcript was started at a pause, before the turn end
    speculative: bool = False  # the reply was begun at the pause, before the turn end
    dropped_replies: int = 0  # replies begun at earlier pauses of the turn, then dropped
    # Barge-in on this response: onset of the user's speech (its first voiced frame's
    # arrival) and the moment the outbound track sent its first silent frame after it.
    barge_in_onset: float | None = None
    barge_in_silenced: float | None = None
    false_interruptions: int = 0

    def mark(self, name: str) -> None:
        """Set stamp `name` to now, unless it is already set (only the first counts)."""
        if getattr(self, name) is None:
            setattr(self, name, now())

    def adopt_turn(self, turn: TurnTimings) -> None:
        """A reply begun speculatively takes the stamps of the turn it answers."""
        self.speech_end = turn.speech_end
        self.speech_stopped = turn.speech_stopped
        self.stt_done = turn.stt_done
        self.stt_preemptive = turn.stt_preemptive
        self.dropped_replies = turn.dropped_replies
        self.speculative = True

    def to_dict(self) -> dict[str, Any]:
        origin = self.speech_end if self.speech_end is not None else self.response_start

        def since(stamp: float | None, base: float | None = origin) -> float | None:
            if stamp is None or base is None:
                return None
            return round((stamp - base) * 1000, 1)

        return {
            "vad_wait_ms": since(self.speech_stopped),
            "stt_ms": _at_least_zero(since(self.stt_done, self.speech_stopped)),
            "llm_first_token_ms": since(self.llm_first_token, self.response_start),
            "first_clause_ms": since(self.first_clause, self.response_start),
            "tts_first_audio_ms": since(self.tts_first_audio, self.first_clause),
            "first_frame_sent_ms": since(self.first_frame_sent),
            "response_start_ms": since(self.response_start),
            "stt_preemptive": self.stt_preemptive,
            "speculative": self.speculative,
            "dropped_replies": self.dropped_replies,
            "barge_in_stop_ms": since(self.barge_in_silenced, self.barge_in_onset),
            "false_interruptions": self.false_interruptions,
            "measured_from": "speech_end" if self.speech_end is not None else "response_start",
        }


def _at_least_zero(ms: float | None) -> float | None:
    """A preemptive transcript can be ready before the turn ends: no wait, not negative."""
    return None if ms is None else max(ms, 0.0)
