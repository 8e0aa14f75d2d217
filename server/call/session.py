"""One call: the conductor between its transport, turn taking, replies and history.

The session owns what the call *is*: the conversation, the reply in progress (and the
one held at a pause), the paced outbound track. It asks `TurnTaking` when the user has
the turn, starts `ResponseRun`s, and applies what the client asks through the
`CallControl` port. It does not parse client events (`server.call.client_events`) or
move bytes (`server.call.transport`).

Its state is computed from those parts, never assigned: USER_SPEAKING while the VAD
hears the user, SPEAKING while a reply's audio plays, THINKING while a turn is being
transcribed or a reply prepared, LISTENING otherwise.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from media.echo.guard import EchoGuard
from media.outbound import OutboundAudioTrack
from media.segmenter import SpeechStopped
from media.vad import SileroModel, SileroVad
from server.call.client_events import ClientEventDispatcher
from server.call.observer import CallObserver, ResponseOutcome
from server.call.ports import CallControlError
from server.call.replies import CallReplies
from server.call.transport import WebRtcTransport
from server.call.voice import CallVoice
from server.engines.base import ChatMessage, Engines, Transcript
from server.engines.voices import VoiceError, VoiceResolver
from server.protocol import events
from server.protocol.conversation import Conversation, Item, new_id
from server.protocol.session_config import SessionConfig
from server.turns.interruption import bid_text
from server.turns.options import TurnDetectionConfig
from server.turns.timings import TurnTimings, now
from server.turns.turn_taking import TurnTaking

log = logging.getLogger("hark.session")

SAMPLE_RATE = 16_000
MAX_MANUAL_BUFFER_S = 60
MIN_COMMIT_SAMPLES = 1_600  # 100 ms at 16 kHz, as OpenAI requires

# Why a call was ended by the server, told to the client in an `error` event first.
END_MESSAGES = {
    "max_duration": "The call reached its maximum duration and was ended",
    "idle_timeout": "No audio was received for too long; the call was ended",
    "ice_timeout": "The call never connected (ICE) and was ended",
    "revoked": "The user's access was revoked; the call was ended",
}


class State(enum.Enum):
    LISTENING = "listening"
    USER_SPEAKING = "user_speaking"
    THINKING = "thinking"
    SPEAKING = "speaking"


class RealtimeSession:
    def __init__(
        self,
        call_id: str,
        engines: Engines,
        vad_model: SileroModel,
        session_config: SessionConfig,
        *,
        max_event_bytes: int,
        ice_timeout_s: float,
        on_closed: Callable[[RealtimeSession], None],
        echo_guard: bool = False,
        tenant: str = "",
        voices: VoiceResolver | None = None,
    ) -> None:
        self.call_id = call_id
        self.session_id = new_id("sess")
        self.config = session_config
        self.engines = engines
        self.conversation = Conversation()
        self.closed = False
        self.close_reason: str | None = None
        self.created_at = time.time()
        self.track = OutboundAudioTrack()
        self.track.on_playback_started = self._on_playback_started
        self.track.on_playback_stopped = self._on_playback_stopped
        # Views of the call (operator monitor, call log) hook in here; see CallObserver.
        self.observers: list[CallObserver] = []
        self.voice = CallVoice(
            engines.tts,
            call_id=call_id,
            tenant=tenant,
            resolver=voices,
            on_rejected=self._voice_rejected,
        )
        self.voice.select(session_config.voice, SessionConfig().voice)
        self.replies = CallReplies(
            conversation=self.conversation,
            engines=dataclasses.replace(engines, tts=self.voice.tts),
            track=self.track,
            emit=self.send,
            on_finished=self._on_response_finished,
        )
        self._echo_guard_default = echo_guard
        self.echo_guard: EchoGuard | None = None
        self._turns = TurnTaking(
            SileroVad(vad_model),
            engines.stt,
            session_config.turn_detection or TurnDetectionConfig(),
            self,
        )
        self._use_echo_guard(session_config.turn_detection)
        self._dispatcher = ClientEventDispatcher(
            self, max_event_bytes=max_event_bytes, call_id=call_id
        )
        self.transport = WebRtcTransport(
            self.track,
            name=call_id,
            on_audio=self._on_audio_frame,
            on_message=self._dispatcher.on_message,
            on_channel_open=self._on_channel_open,
            on_failed=lambda reason: self._spawn(self.close(reason), "close"),
        )
        self._user_item_id: str | None = None
        self._turn_seq = 0
        self._turns_in_flight = 0  # committed turns still being transcribed
        self._manual_buffer: list[np.ndarray] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ice_timeout_s = ice_timeout_s
        self._on_closed = on_closed

    # ---- state -----------------------------------------------------------------------------

    @property
    def state(self) -> State:
        if self._turns.speaking:
            return State.USER_SPEAKING
        if self.replies.in_progress:
            return State.SPEAKING if self.replies.playing else State.THINKING
        return State.THINKING if self._turns_in_flight else State.LISTENING

    @property
    def last_audio_at(self) -> float | None:
        return self.transport.last_audio_at

    @property
    def connection_state(self) -> str:
        return self.transport.connection_state

    # ---- negotiation and lifecycle -------------------------------------------------------

    async def negotiate(self, offer_sdp: str) -> str:
        """Apply the client's offer and return the answer SDP (all candidates included)."""
        answer = await self.transport.negotiate(offer_sdp)
        self._spawn(self._watch_ice(), "ice-timeout")
        return answer

    async def close(self, reason: str = "hangup") -> None:
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        log.info("call %s closing: %s", self.call_id, reason)
        self.replies.close()
        self.voice.close()
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current:
                task.cancel()
        self.track.stop()
        await self.transport.close()
        self._on_closed(self)

    def end(self, reason: str) -> asyncio.Task[None]:
        """The server ends the call: tells the client why (an `error` event), then closes."""
        message = END_MESSAGES.get(reason, reason)
        self.report_error("invalid_request_error", f"session_{reason}", message)
        return asyncio.create_task(self.close(reason), name=f"{self.call_id}-end-{reason}")

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=f"{self.call_id}-{name}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "call %s task %s failed", self.call_id, task.get_name(), exc_info=task.exception()
            )

    async def _watch_ice(self) -> None:
        await asyncio.sleep(self._ice_timeout_s)
        if self.transport.connection_state != "connected":
            await self.close("ice_timeout")

    def _on_channel_open(self) -> None:
        self.send(events.session_created(self.session_dict()))

    def session_dict(self) -> dict[str, Any]:
        return self.config.to_dict(self.session_id)

    # ---- to the client and the observers ----------------------------------------------------

    def send(self, event: dict[str, Any]) -> None:
        self.transport.send_event(json.dumps(event))

    def report_error(
        self,
        type_: str,
        code: str,
        message: str,
        *,
        param: str | None = None,
        event_id: str | None = None,
    ) -> None:
        """An `error` event to the client, counted by the observers."""
        self.send(events.error(type_, code, message, param=param, event_id=event_id))
        self._notify(lambda observer: observer.error(code))

    def _notify(self, hook: Callable[[CallObserver], None]) -> None:
        for observer in self.observers:
            try:
                hook(observer)
            except Exception:
                log.exception("call %s observer %r failed", self.call_id, observer)

    # ---- inbound audio and turns ---------------------------------------------------------

    def _on_audio_frame(self, frame: np.ndarray, audio_end_ms: int) -> None:
        if self.config.turn_detection is None:
            if sum(len(f) for f in self._manual_buffer) < MAX_MANUAL_BUFFER_S * SAMPLE_RATE:
                self._manual_buffer.append(frame)
            return
        self._turns.push(frame, audio_end_ms)

    # ---- TurnHost: what turn taking asks of the session ------------------------------------

    def on_speech_started(self, audio_start_ms: int) -> None:
        self._turn_seq += 1
        self.replies.speculation.new_turn()
        self._user_item_id = new_id("item")
        self.send(events.speech_started(audio_start_ms, self._user_item_id))
        self._notify(lambda observer: observer.speech_started())

    def on_turn_ended(
        self,
        stopped: SpeechStopped,
        transcript: asyncio.Task[Transcript],
        timings: TurnTimings,
        *,
        noise_over_reply: bool = False,
    ) -> None:
        item_id = self._user_item_id or new_id("item")
        self._user_item_id = None
        timings.dropped_replies = self.replies.speculation.dropped
        self.send(events.speech_stopped(stopped.audio_end_ms, item_id))
        turn = self.config.turn_detection or TurnDetectionConfig()
        self._commit_audio(
            item_id,
            stopped.audio,
            timings,
            respond=turn.create_response,
            transcript=transcript,
            only_a_bid=noise_over_reply,
        )

    def reply_in_progress(self) -> bool:
        return self.replies.in_progress

    def speculate(self, transcript: str) -> None:
        """The user paused after `transcript`: start its reply now, held (no events, no
        audio) until the turn really ends (`server.reply.speculation`)."""
        turn = self.config.turn_detection
        if self.replies.current is not None or turn is None or not turn.create_response:
            return
        if turn.speculative_reply:
            history = [*self.conversation.messages(), ChatMessage("user", transcript)]
            self.replies.speculate(history, self.config.instructions, self.config.voice)

    def drop_speculation(self) -> None:
        self.replies.speculation.drop()

    def pause_reply(self, onset_at: float) -> None:
        self.replies.pause(onset_at)

    def resume_reply(self) -> None:
        self.replies.resume()

    def interrupt_reply(self) -> None:
        self.replies.interrupt()

    # ---- CallControl: what client events may do --------------------------------------------

    def update_session(self, update: dict[str, Any]) -> None:
        updated = self.config.apply(update)
        self.voice.change(self.config.voice, updated.voice)  # refuses one it cannot speak
        if updated.turn_detection != self.config.turn_detection:
            self.clear_input(announce=False)
            if updated.turn_detection is not None:
                self._turns.update(updated.turn_detection)
            self._use_echo_guard(updated.turn_detection)
        self.config = updated
        self.send(events.session_updated(self.session_dict()))

    def _voice_rejected(self, previous: str, error: VoiceError) -> None:
        """A stored voice could not be found: say so, and speak the previous one again."""
        self.report_error(
            "invalid_request_error", error.code, error.message, param="session.audio.output.voice"
        )
        self.config = dataclasses.replace(self.config, voice=previous)
        self.send(events.session_updated(self.session_dict()))

    def commit_input(self) -> None:
        if self.config.turn_detection is not None:
            raise CallControlError(
                "input_audio_buffer_commit_empty",
                "With server_vad, turns are committed by the server; set "
                "turn_detection to null to commit manually",
            )
        audio = np.concatenate(self._manual_buffer) if self._manual_buffer else np.zeros(0, "int16")
        self._manual_buffer.clear()
        if len(audio) < MIN_COMMIT_SAMPLES:
            raise CallControlError(
                "input_audio_buffer_commit_empty",
                "Buffer too small: at least 100 ms of audio is needed",
            )
        timings = TurnTimings(speech_stopped=now(), speech_end=now())
        self._commit_audio(new_id("item"), audio, timings, respond=False)

    def clear_input(self, *, announce: bool = True) -> None:
        self.replies.speculation.drop()
        self._manual_buffer.clear()
        self._turns.reset()
        self._user_item_id = None
        if announce:
            self.send(events.input_cleared())

    def add_item(self, item: Item) -> None:
        previous = self.conversation.add(item)
        self.send(events.item_added(previous, item))
        self.send(events.item_done(previous, item))

    def find_item(self, item_id: str) -> Item | None:
        return self.conversation.get(item_id)

    def delete_item(self, item_id: str) -> None:
        self.conversation.delete(item_id)
        self.send(events.item_deleted(item_id))

    def truncate(self, item_id: str, audio_end_ms: int) -> None:
        item = self.conversation.get(item_id)
        if item is None:
            raise CallControlError("item_not_found", f"No item with id '{item_id[:64]}'", "item_id")
        self.replies.truncate(item, audio_end_ms)

    def create_response(self, instructions: str | None) -> None:
        if self.replies.current is not None:
            raise CallControlError(
                "conversation_already_has_active_response",
                f"Response {self.replies.current.id} is still in progress",
            )
        self._answer(TurnTimings(), instructions)

    def cancel_response(self, response_id: str | None) -> None:
        self.replies.cancel(response_id)

    def clear_output(self) -> None:
        self.replies.clear_output()

    def client_stats(self, stats: dict[str, Any]) -> None:
        self._notify(lambda observer: observer.client_stats(stats))

    def _use_echo_guard(self, turn: TurnDetectionConfig | None) -> None:
        """The session's `echo_guard` wins over the server default; a guard is only
        built (and fed every sent frame) for calls that want it."""
        wanted = (
            self._echo_guard_default if turn is None or turn.echo_guard is None else turn.echo_guard
        )
        if wanted == (self.echo_guard is not None):
            return
        self.echo_guard = EchoGuard() if wanted else None
        self.track.on_frame_sent = self.echo_guard.far_end if self.echo_guard else None
        self._turns.echo = self.echo_guard

    # ---- committing turns ------------------------------------------------------------------

    def _commit_audio(
        self,
        item_id: str,
        audio: np.ndarray,
        timings: TurnTimings,
        *,
        respond: bool,
        transcript: asyncio.Task[Transcript] | None = None,
        only_a_bid: bool = False,
    ) -> None:
        item = Item(id=item_id, role="user", kind="input_audio", text=None)
        previous = self.conversation.add(item)
        self.send(events.committed(previous, item_id))
        self.send(events.item_added(previous, item))
        if transcript is None:
            transcript = asyncio.create_task(
                self.engines.stt.transcribe_detailed(audio), name="stt"
            )
        seq = self._turn_seq
        self._turns_in_flight += 1
        self._spawn(
            self._complete_turn(
                item, previous, audio, transcript, timings, respond, seq, only_a_bid
            ),
            "turn",
        )

    async def _complete_turn(
        self,
        item: Item,
        previous: str | None,
        audio: np.ndarray,
        stt: asyncio.Task[Transcript],
        timings: TurnTimings,
        respond: bool,
        seq: int,
        only_a_bid: bool = False,
    ) -> None:
        try:
            try:
                heard = await stt
                self.voice.hear(audio, heard, self.config.voice)  # `caller`: the first clean turn
                # Whisper's words for a cough or a click ("Okay.", "you") are not a turn.
                transcript = heard.text.strip() if heard.has_words else ""
                if only_a_bid and not bid_text(heard):
                    respond = False  # an "uh-huh" over the reply: heard, not answered
            except Exception as exc:
                log.exception("call %s: transcription failed", self.call_id)
                self.report_error("server_error", "stt_failed", f"Speech-to-text failed: {exc}")
                self._notify(lambda observer: observer.engine_fault("stt", "stt_failed"))
                self.replies.apologize(self.config.voice)
                transcript = ""
            timings.mark("stt_done")
            item.text = transcript
            self.send(events.transcription_completed(item.id, transcript, len(audio) / SAMPLE_RATE))
            self.send(events.item_done(previous, item))
            self._notify(lambda observer: observer.user_transcript(item.id, transcript))
            still_current = seq == self._turn_seq and not self._turns.speaking
            busy = self.replies.current is not None
            if not transcript or not respond or not still_current or busy:
                if still_current:
                    self.replies.speculation.drop()
                return
            history = self.conversation.messages()
            if not self.replies.adopt(
                history, self.config.instructions, self.config.voice, timings
            ):
                self._answer(timings)
        finally:
            self._turns_in_flight -= 1

    # ---- responses ----------------------------------------------------------------------

    def _answer(self, timings: TurnTimings, instructions: str | None = None) -> None:
        """Reply to the conversation as it is now."""
        self.replies.start(
            self.conversation.messages(),
            self.config.instructions if instructions is None else instructions,
            self.config.voice,
            timings,
        )

    def _on_response_finished(self, outcome: ResponseOutcome) -> None:
        self._notify(lambda observer: observer.response_finished(outcome))

    def _on_playback_started(self, response_id: str) -> None:
        self.send(events.output_audio_buffer("started", response_id))
        run = self.replies.current
        if run is not None and run.id == response_id:
            run.timings.mark("first_frame_sent")
        self._notify(lambda observer: observer.playback_started(response_id))

    def _on_playback_stopped(self, response_id: str) -> None:
        self.send(events.output_audio_buffer("stopped", response_id))
