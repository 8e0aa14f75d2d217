"""The user's side of a call: each turn committed to the conversation and transcribed.

A turn (ended by turn taking, or committed by the client from its manual buffer) becomes
an `input_audio` item at once (`input_audio_buffer.committed`, `conversation.item.added`);
its transcript follows (`…input_audio_transcription.completed`, `conversation.item.done`),
and then the host decides whether to answer. Turns are numbered so that a transcript
arriving after the user spoke again is heard but not answered as if it were current.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

import numpy as np

from media.segmenter import SpeechStopped
from server.call.history import CallHistory
from server.call.ports import CallControlError
from server.call.tasks import CallTasks
from server.engines.base import SpeechToText, Transcript
from server.protocol import events
from server.protocol.conversation import Conversation, Item, new_id
from server.turns.interruption import bid_text
from server.turns.timings import TurnTimings, now

log = logging.getLogger("hark.session")

SAMPLE_RATE = 16_000
MAX_MANUAL_BUFFER_S = 60
MIN_COMMIT_SAMPLES = 1_600  # 100 ms at 16 kHz, as OpenAI requires


class TurnsHost(Protocol):
    """What committing and transcribing a turn asks of the call."""

    def send(self, event: dict[str, Any]) -> None: ...

    def user_speaking(self) -> bool: ...

    def heard(self, audio: np.ndarray, transcript: Transcript) -> None:
        """A turn's audio and its transcript (the caller's own voice may become a voice)."""

    def transcription_failed(self, item: Item, previous: str | None, exc: Exception) -> None: ...

    def transcribed(
        self, item: Item, timings: TurnTimings, *, respond: bool, current: bool
    ) -> None:
        """The turn's words are in the conversation: answer them if `respond` (and the
        user has not spoken again since: `current`)."""


class UserTurns:
    def __init__(
        self,
        host: TurnsHost,
        *,
        tasks: CallTasks,
        conversation: Conversation,
        history: CallHistory,
        stt: SpeechToText,
    ) -> None:
        self._host = host
        self._tasks = tasks
        self._conversation = conversation
        self._history = history
        self._stt = stt
        self.item_id: str | None = None  # the turn in progress, once the VAD heard it
        self._started_ms = 0
        self._partial = ""  # the turn's words sent as transcription deltas so far
        self._seq = 0
        self.in_flight = 0  # committed turns still being transcribed
        self._manual: list[np.ndarray] = []

    # ---- turns cut by turn taking -------------------------------------------------------

    def started(self, audio_start_ms: int) -> None:
        self._seq += 1
        self._partial = ""
        self.item_id = new_id("item")
        self._started_ms = audio_start_ms
        self._host.send(events.speech_started(audio_start_ms, self.item_id))

    def ended(
        self,
        stopped: SpeechStopped,
        transcript: asyncio.Task[Transcript],
        timings: TurnTimings,
        *,
        respond: bool,
        only_a_bid: bool,
    ) -> None:
        item_id = self.item_id or new_id("item")
        self.item_id = None
        self._host.send(events.speech_stopped(stopped.audio_end_ms, item_id))
        self._history.user_spoke(item_id, self._started_ms, stopped.audio_end_ms)
        self._commit(item_id, stopped.audio, timings, respond, transcript, only_a_bid)

    def partial(self, transcript: str) -> None:
        """Stream the turn's words at a pause, as deltas, only while they extend what was
        sent (`.completed` has the final words)."""
        if self.item_id is None:
            return
        if not transcript.startswith(self._partial) or transcript == self._partial:
            return
        delta, self._partial = transcript[len(self._partial) :], transcript
        self._host.send(events.transcription_delta(self.item_id, delta))

    # ---- manual turns (turn detection off) ----------------------------------------------

    def buffer(self, frame: np.ndarray) -> None:
        if sum(len(f) for f in self._manual) < MAX_MANUAL_BUFFER_S * SAMPLE_RATE:
            self._manual.append(frame)

    def commit_manual(self, tail: np.ndarray) -> None:
        """Commit the buffer (and `tail`, audio not yet framed) as a turn, not answered."""
        self._manual.append(tail)
        audio = np.concatenate(self._manual)
        self._manual.clear()
        if len(audio) < MIN_COMMIT_SAMPLES:
            raise CallControlError(
                "input_audio_buffer_commit_empty",
                "Buffer too small: at least 100 ms of audio is needed",
            )
        timings = TurnTimings(speech_stopped=now(), speech_end=now())
        self._commit(new_id("item"), audio, timings, False, None, False)

    def clear(self) -> None:
        self._manual.clear()
        self.item_id = None

    # ---- committing and transcribing ----------------------------------------------------

    def _commit(
        self,
        item_id: str,
        audio: np.ndarray,
        timings: TurnTimings,
        respond: bool,
        transcript: asyncio.Task[Transcript] | None,
        only_a_bid: bool,
    ) -> None:
        item = Item(id=item_id, role="user", kind="input_audio", text=None)
        previous = self._conversation.add(item)
        self._host.send(events.committed(previous, item_id))
        self._host.send(events.item_added(previous, item))
        if transcript is None:
            transcript = asyncio.create_task(self._stt.transcribe_detailed(audio), name="stt")
        self.in_flight += 1
        job = self._complete(
            item, previous, audio, transcript, timings, respond, only_a_bid, self._seq
        )
        self._tasks.spawn(job, "turn")

    async def _complete(
        self,
        item: Item,
        previous: str | None,
        audio: np.ndarray,
        stt: asyncio.Task[Transcript],
        timings: TurnTimings,
        respond: bool,
        only_a_bid: bool,
        seq: int,
    ) -> None:
        try:
            try:
                heard = await stt
                self._host.heard(audio, heard)
                # Whisper's words for a cough or a click ("Okay.", "you") are not a turn.
                transcript = heard.text.strip() if heard.has_words else ""
                if only_a_bid and not bid_text(heard):
                    respond = False  # an "uh-huh" over the reply: heard, not answered
            except Exception as exc:
                log.exception("transcription of %s failed", item.id)
                self._host.transcription_failed(item, previous, exc)
                return
            timings.mark("stt_done")
            item.text = transcript
            seconds = len(audio) / SAMPLE_RATE
            detected = heard.language if heard.detected and transcript else None
            self._host.send(events.transcription_completed(item.id, transcript, seconds, detected))
            self._host.send(events.item_done(previous, item))
            self._history.done(item)
            current = seq == self._seq and not self._host.user_speaking()
            respond = respond and bool(transcript)
            self._host.transcribed(item, timings, respond=respond, current=current)
        finally:
            self.in_flight -= 1
