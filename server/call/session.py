"""One call: the conductor between its transport, turn taking, replies and history.

The session owns what the call *is*: the conversation, the replies (`CallReplies`), the user's
turns (`UserTurns`), the paced outbound track, the caller's language (`CallLanguage`). It asks
`TurnTaking` when the user has the turn and applies the client's asks through the `CallControl`
port; it parses no client events and moves no bytes (`client_events`, `transport`, `sideband`).
Its state is computed: USER_SPEAKING (the VAD hears the user), SPEAKING (a reply plays),
THINKING (a turn transcribed, a reply prepared), else LISTENING."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import Callable
from typing import Any, Literal

import numpy as np

from media.outbound import OutboundAudioTrack
from media.segmenter import SpeechStopped
from media.vad import SileroModel, SileroVad
from server.call.client_events import ClientEventDispatcher
from server.call.history import CallHistory
from server.call.language import CallLanguage, check_update
from server.call.observer import CallObserver, ResponseOutcome
from server.call.ports import CallControlError
from server.call.replies import CallReplies
from server.call.reply_specs import context_history, reply_spec
from server.call.state import END_MESSAGES, State
from server.call.tasks import CallTasks
from server.call.transport import EventChannel, Transport, WebRtcTransport
from server.call.user_turns import UserTurns
from server.call.voice import CallVoice
from server.call.websocket_transport import SEND_AHEAD_S, WebSocketTransport
from server.engines.base import ChatMessage, Engines, Transcript
from server.engines.voices import VoiceError, VoiceResolver
from server.protocol import events
from server.protocol.conversation import Conversation, Item, new_id
from server.protocol.response_params import ResponseParams
from server.protocol.session_config import SessionConfig
from server.reply.spec import ReplySpec
from server.store.memory import CallContext
from server.turns.options import EchoGuardMode, TurnDetectionConfig
from server.turns.smart_turn import SmartTurn
from server.turns.timings import TurnTimings
from server.turns.turn_taking import TurnTaking

log = logging.getLogger("hark.session")


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
        echo_guard: EchoGuardMode = "off",
        transport: Literal["webrtc", "websocket"] = "webrtc",
        append_burst_s: float,
        context: CallContext | None = None,
        tenant: str = "",
        voices: VoiceResolver | None = None,
        smart_turn: SmartTurn | None = None,
    ) -> None:
        self.call_id = call_id
        self.tasks = CallTasks(call_id)
        self.session_id = new_id("sess")
        self.config = session_config
        self.engines = engines
        self.conversation = Conversation()
        self.closed = False
        self.close_reason: str | None = None
        self.created_at = time.time()
        # A WebSocket client buffers the reply itself: its audio may be sent a little ahead.
        ahead = SEND_AHEAD_S if transport == "websocket" else 0.0
        self.track = OutboundAudioTrack(send_ahead_s=ahead)
        self.track.on_playback_started = self._on_playback_started
        self.track.on_playback_stopped = self._on_playback_stopped
        self.observers: list[CallObserver] = []  # the operator monitor, the call log
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
        # The durable conversation: replay, items as they finish, the memory window.
        context = context or CallContext(conversation_id="", tenant="")
        self.history = CallHistory(
            self.conversation,
            self.send,
            conversation_id=context.conversation_id or None,
            earlier=context.earlier,
            summary=context.summary,
            memory_tokens=context.memory_tokens,
            sink=context.history,
            recorder=context.recorder,
        )
        self._greeting = context.greeting
        self.language = CallLanguage(engines, lambda: self.config, self.report_error, call_id)
        self.user_turns = UserTurns(
            self,
            tasks=self.tasks,
            conversation=self.conversation,
            history=self.history,
            stt=self.language.stt,
        )
        self._echo_guard_default = echo_guard
        detection = session_config.turn_detection or TurnDetectionConfig()
        self._turns = TurnTaking(
            SileroVad(vad_model), self.language.stt, detection, self, smart_turn=smart_turn
        )
        self._use_echo_guard(session_config.turn_detection)
        self.track.on_frame_sent = self._on_frame_sent
        self._dispatcher = ClientEventDispatcher(
            self, max_event_bytes=max_event_bytes, call_id=call_id
        )
        transport_class = WebSocketTransport if transport == "websocket" else WebRtcTransport
        self.transport: Transport = transport_class(
            self.track,
            name=call_id,
            on_audio=self._on_audio_frame,
            on_message=self._dispatcher.on_message,
            on_channel_open=self._on_channel_open,
            on_failed=lambda reason: self.tasks.spawn(self.close(reason), "close"),
        )
        if isinstance(self.transport, WebSocketTransport):
            self.transport.bind(self, append_burst_s=append_burst_s)
        self.sidebands: list[EventChannel] = []  # they add and remove themselves
        self._ice_timeout_s = ice_timeout_s
        self._on_closed = on_closed

    # ---- state -----------------------------------------------------------------------------

    @property
    def state(self) -> State:
        if self._turns.speaking:
            return State.USER_SPEAKING
        if self.replies.in_progress:
            return State.SPEAKING if self.replies.playing else State.THINKING
        return State.THINKING if self.user_turns.in_flight else State.LISTENING

    # ---- negotiation and lifecycle -------------------------------------------------------

    async def negotiate(self, offer_sdp: str) -> str:
        """Apply the client's offer and return the answer SDP (all candidates included)."""
        answer = await self.transport.negotiate(offer_sdp)
        self.tasks.spawn(self._watch_ice(), "ice-timeout")
        return answer

    async def close(self, reason: str = "hangup") -> None:
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        log.info("call %s closing: %s", self.call_id, reason)
        self.replies.close()
        self.history.close(reason)
        self.voice.close()
        self._turns.close()  # a decision on a held voice being computed is abandoned
        self.tasks.cancel_all()
        self.track.stop()
        channels: list[EventChannel] = [self.transport, *self.sidebands]
        await asyncio.gather(*(c.close(reason) for c in channels), return_exceptions=True)
        self.sidebands.clear()
        self._on_closed(self)

    def end(self, reason: str) -> asyncio.Task[None]:
        """The server ends the call: tells the client why (an `error` event), then closes."""
        message = END_MESSAGES.get(reason, reason)
        self.report_error("invalid_request_error", f"session_{reason}", message)
        return asyncio.create_task(self.close(reason), name=f"{self.call_id}-end-{reason}")

    async def _watch_ice(self) -> None:
        await asyncio.sleep(self._ice_timeout_s)
        if self.transport.connection_state != "connected":
            await self.close("ice_timeout")

    @property
    def conversation_id(self) -> str | None:
        return self.history.conversation_id

    def _spec(
        self, params: ResponseParams | None = None, history: list[ChatMessage] | None = None
    ) -> ReplySpec:
        """A reply to `history`, else to the response's `input`, else to the memory window."""
        if history is None and params is not None and params.input is not None:
            history = context_history(self.conversation, params)
        elif history is None:
            history = self.history.context(self.conversation.messages())
        return self.language.adapt(reply_spec(self.config, history, params, self.conversation_id))

    def _on_channel_open(self) -> None:
        self.send(events.session_created(self.session_dict()))
        self.history.replay()
        if self._greeting and self.replies.current is None:
            self.replies.say(self._greeting, self.config.voice)
        self._greeting = None

    def session_dict(self) -> dict[str, Any]:
        return self.config.to_dict(self.session_id)

    # ---- to the client and the observers ----------------------------------------------------

    def send(self, event: dict[str, Any]) -> None:
        raw = json.dumps(event)
        self.transport.send_event(raw)
        for channel in self.sidebands:
            channel.send_event(raw)

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
        self.count_error(code)

    def count_error(self, code: str) -> None:
        """Tell the observers an error was reported (on whichever channel)."""
        self._notify(lambda observer: observer.error(code))

    def _notify(self, hook: Callable[[CallObserver], None]) -> None:
        for observer in self.observers:
            try:
                hook(observer)
            except Exception:
                log.exception("call %s observer %r failed", self.call_id, observer)

    # ---- inbound audio and turns ---------------------------------------------------------

    def _on_audio_frame(self, frame: np.ndarray, audio_end_ms: int) -> None:
        self.history.caller_audio(frame, audio_end_ms)
        if self.config.turn_detection is None:
            self.user_turns.buffer(frame)
            return
        self._turns.push(frame, audio_end_ms)

    # ---- TurnHost: what turn taking asks of the session ------------------------------------

    def on_speech_started(self, audio_start_ms: int) -> None:
        self.replies.speculation.new_turn()
        self.user_turns.started(audio_start_ms)
        self._notify(lambda observer: observer.speech_started())

    def on_turn_ended(
        self,
        stopped: SpeechStopped,
        transcript: asyncio.Task[Transcript],
        timings: TurnTimings,
        *,
        noise_over_reply: bool = False,
    ) -> None:
        timings.dropped_replies = self.replies.speculation.dropped
        turn = self.config.turn_detection or TurnDetectionConfig()
        self.user_turns.ended(
            stopped,
            transcript,
            timings,
            respond=turn.create_response,
            only_a_bid=noise_over_reply,
        )

    def reply_in_progress(self) -> bool:
        return self.replies.in_progress

    def said_recently(self) -> str:
        return self.replies.said_recently()

    def partial_transcript(self, transcript: str) -> None:
        """A transcription session streams the turn's words at each pause, as deltas."""
        if self.config.transcription_only:
            self.user_turns.partial(transcript)

    def speculate(self, transcript: str) -> None:
        """The user paused after `transcript`: start its reply now, held (no events, no
        audio) until the turn really ends (`server.reply.speculation`)."""
        turn = self.config.turn_detection
        if self.replies.current is not None or turn is None or not turn.create_response:
            return
        if turn.speculative_reply and not self.config.transcription_only:
            history = self.history.context(
                [*self.conversation.messages(), ChatMessage("user", transcript)]
            )
            self.replies.speculate(self._spec(history=history))

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
        if updated.type != self.config.type:
            raise CallControlError(
                "invalid_value",
                f"A {self.config.type} session cannot become a {updated.type} session",
                "session.type",
            )
        check_update(self.config, updated, self.engines, self.voice)  # may refuse it
        if updated.turn_detection != self.config.turn_detection:
            self.clear_input(announce=False)
            if updated.turn_detection is not None:
                self._turns.update(updated.turn_detection)
            self._use_echo_guard(updated.turn_detection)
        self.config = updated
        self.send(events.session_updated(self.session_dict()))

    def append_input(self, audio: str) -> None:
        self.transport.append_input(audio, self.config.input_format)

    def _voice_rejected(self, previous: str, error: VoiceError) -> None:
        """A stored voice could not be found: say so, and speak the previous one again."""
        self.report_error(
            "invalid_request_error", error.code, error.message, param="session.audio.output.voice"
        )
        self.config = dataclasses.replace(self.config, voice=previous)
        self.send(events.session_updated(self.session_dict()))

    def commit_input(self) -> None:
        if self.config.turn_detection is not None:
            # The buffer is the turn in progress: end it now, as its silence would.
            if not self._turns.commit():
                raise CallControlError(
                    "input_audio_buffer_commit_empty",
                    "Nothing to commit: no speech is in progress (with turn detection on, the "
                    "server commits turns itself)",
                )
            return
        self.user_turns.commit_manual(self.transport.take_partial_input())

    def clear_input(self, *, announce: bool = True) -> None:
        self.replies.speculation.drop()
        self.user_turns.clear()
        self.transport.clear_input()
        self._turns.reset()
        if announce:
            self.send(events.input_cleared())

    def add_item(self, item: Item) -> None:
        answered = self.conversation.find_call(item.call_id or "")
        if item.type == "function_call_output" and answered is None:
            raise CallControlError(
                "unknown_call_id",
                f"No function call with call_id '{(item.call_id or '')[:64]}' in the conversation",
                "item.call_id",
            )
        previous = self.conversation.add(item)
        self.send(events.item_added(previous, item))
        self.send(events.item_done(previous, item))
        self.history.done(item)

    def find_item(self, item_id: str) -> Item | None:
        return self.conversation.get(item_id)

    def delete_item(self, item_id: str) -> None:
        self.conversation.delete(item_id)
        self.send(events.item_deleted(item_id))
        self.history.deleted(item_id)

    def truncate(self, item_id: str, audio_end_ms: int) -> None:
        item = self.conversation.get(item_id)
        if item is None:
            raise CallControlError("item_not_found", f"No item with id '{item_id[:64]}'", "item_id")
        self.replies.truncate(item, audio_end_ms)
        self.history.changed(item)

    def create_response(self, params: ResponseParams) -> None:
        if self.config.transcription_only:
            raise CallControlError(
                "invalid_request",
                "A transcription session does not respond; use a realtime session",
                "type",
            )
        spec = self._spec(params)
        if self.replies.current is not None and (spec.in_conversation or spec.spoken):
            raise CallControlError(
                "conversation_already_has_active_response",
                f"Response {self.replies.current.id} is still in progress",
            )
        if self.user_turns.in_flight:  # commit then response.create: answer once it is heard
            self.tasks.spawn(self._respond_when_heard(params), "response-when-heard")
        else:
            self.replies.start(spec, TurnTimings())

    async def _respond_when_heard(self, params: ResponseParams) -> None:
        turns = self.tasks.named("turn")
        if turns:
            await asyncio.wait(turns)  # (wait, not gather: never cancels the turns)
        if self.replies.current is not None:
            return
        try:
            self.replies.start(self._spec(params), TurnTimings())
        except CallControlError as exc:
            self.report_error("invalid_request_error", exc.code, exc.message, param=exc.param)

    def cancel_response(self, response_id: str | None) -> None:
        self.replies.cancel(response_id)

    def clear_output(self) -> None:
        self.replies.clear_output()

    def client_stats(self, stats: dict[str, Any]) -> None:
        self._notify(lambda observer: observer.client_stats(stats))

    def _use_echo_guard(self, turn: TurnDetectionConfig | None) -> None:
        """The session's `echo_guard` wins over the server default."""
        self._turns.use_echo_guard((turn and turn.echo_guard) or self._echo_guard_default)

    def _on_frame_sent(self, pcm: np.ndarray, sent_at: float) -> None:
        """Every frame the caller is sent: the echo guard's reference, the recording."""
        self._turns.far_end(pcm, sent_at)
        self.history.assistant_audio(pcm, sent_at)

    # ---- TurnsHost: what committing a user turn asks of the session -----------------------

    def user_speaking(self) -> bool:
        return self._turns.speaking

    def heard(self, audio: np.ndarray, transcript: Transcript) -> None:
        self.voice.hear(audio, transcript, self.config.voice)  # `caller`: the first clean turn

    def transcription_failed(self, item: Item, previous: str | None, exc: Exception) -> None:
        self.send(events.transcription_failed(item.id, "transcription_failed", f"{exc}"))
        self.report_error("server_error", "stt_failed", f"Speech-to-text failed: {exc}")
        self._notify(lambda observer: observer.engine_fault("stt", "stt_failed"))
        if not self.config.transcription_only:
            self.replies.apologize(self.config.voice)
        item.text = ""
        self.send(events.item_done(previous, item))

    def transcribed(
        self, item: Item, timings: TurnTimings, *, respond: bool, current: bool
    ) -> None:
        self._notify(lambda observer: observer.user_transcript(item.id, item.text or ""))
        respond = respond and not self.config.transcription_only
        if not respond or not current or self.replies.current is not None:
            if current:
                self.replies.speculation.drop()
            return
        spec = self._spec()
        if not self.replies.adopt(spec, timings):
            self.replies.start(spec, timings)

    # ---- responses ----------------------------------------------------------------------

    def _on_response_finished(self, outcome: ResponseOutcome) -> None:
        item = self.conversation.get(outcome.item_id)
        if item is not None:
            self.history.done(item)
        self._notify(lambda observer: observer.response_finished(outcome))

    def _on_playback_started(self, response_id: str) -> None:
        self.send(events.output_audio_buffer("started", response_id))
        run = self.replies.current
        if run is not None and run.id == response_id:
            run.timings.mark("first_frame_sent")
            self.history.assistant_playing(run.item.id, playing=True)
        self._notify(lambda observer: observer.playback_started(response_id))

    def _on_playback_stopped(self, response_id: str) -> None:
        self.send(events.output_audio_buffer("stopped", response_id))
        run = self.replies.current
        if run is not None and run.id == response_id:
            self.history.assistant_playing(run.item.id, playing=False)
