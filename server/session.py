"""One call: the peer connection, its `oai-events` channel, the turn loop and the history.

The state machine is explicit: LISTENING → USER_SPEAKING (VAD onset) → THINKING (turn
ended, transcribing, generating) → SPEAKING (reply audio going out) → LISTENING. Listening
(turns, pauses, interruptions) is decided by `server.turn_taking`; speech onset during a
reply pauses it at once, and the reply is then cancelled (keeping only what was heard) or
resumed. Client events are dispatched by `server.client_events`.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack

from media.echo_guard import EchoGuard
from media.inbound import InboundAudio
from media.jitter import shorten_audio_receive_delay
from media.outbound import OutboundAudioTrack
from media.segmenter import SpeechStopped
from media.vad import SileroModel, SileroVad
from server import events
from server.client_events import ClientEventDispatcher
from server.conversation import Conversation, Item, new_id
from server.engines.base import ChatMessage, Engines, Transcript
from server.heard_text import HeardText
from server.interruption import bid_text
from server.response import CancelReason, ResponseRun
from server.session_config import SessionConfig, TurnDetectionConfig
from server.turn_metrics import TurnTimings
from server.turn_taking import TurnTaking

log = logging.getLogger("hark.session")

SAMPLE_RATE = 16_000
MAX_MANUAL_BUFFER_S = 60
MAX_PENDING_EVENTS = 256
MAX_SPOKEN_ITEMS = 50


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
    ) -> None:
        self.call_id = call_id
        self.session_id = new_id("sess")
        self.config = session_config
        self.engines = engines
        self.state = State.LISTENING
        self.conversation = Conversation()
        self.response: ResponseRun | None = None
        # A reply begun at the user's pause, held until the pause proves to end the turn.
        self._speculation: ResponseRun | None = None
        self._speculation_key: tuple[Any, ...] | None = None
        self._dropped_replies = 0  # speculative replies dropped in the current turn
        self.closed = False
        self.max_event_bytes = max_event_bytes
        self.track = OutboundAudioTrack()
        self.track.on_playback_started = self._on_playback_started
        self.track.on_playback_stopped = self._on_playback_stopped
        self._echo_guard_default = echo_guard
        self.echo_guard: EchoGuard | None = None
        self._turns = TurnTaking(
            SileroVad(vad_model),
            engines.stt,
            session_config.turn_detection or TurnDetectionConfig(),
            self,
        )
        self._use_echo_guard(session_config.turn_detection)
        self._pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self._channel: Any = None
        self._pending: list[str] = []
        self._inbound: InboundAudio | None = None
        self._user_item_id: str | None = None
        self._turn_seq = 0
        self._manual_buffer: list[np.ndarray] = []
        self._spoken: dict[str, HeardText] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ice_timeout_s = ice_timeout_s
        self._on_closed = on_closed
        self.created_at = time.time()
        self.close_reason: str | None = None
        # Called with every server event the session emits (operator views, metrics, logs).
        self.listeners: list[Callable[[dict[str, Any]], None]] = []
        # Called with each validated `hark.client_stats` summary the client sends.
        self.client_stats_listeners: list[Callable[[dict[str, Any]], None]] = []

    # ---- negotiation and lifecycle -------------------------------------------------------

    async def negotiate(self, offer_sdp: str) -> str:
        """Apply the client's offer and return the answer SDP (all candidates included)."""
        pc = self._pc
        pc.on("datachannel", self._on_datachannel)
        pc.on("track", self._on_track)
        pc.on("connectionstatechange", self._on_connection_state)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        shorten_audio_receive_delay(pc)  # VAD sees each packet 20 ms after it, not 80
        pc.addTrack(self.track)
        await pc.setLocalDescription(await pc.createAnswer())
        self._spawn(self._watch_ice(), "ice-timeout")
        return pc.localDescription.sdp

    async def close(self, reason: str = "hangup") -> None:
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        log.info("call %s closing: %s", self.call_id, reason)
        if self.response is not None:
            self.response.cancel("client_cancelled")
        self.drop_speculation()
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current:
                task.cancel()
        if self._inbound is not None:
            await self._inbound.stop()
        self.track.stop()
        with contextlib.suppress(Exception):
            await self._pc.close()
        self._on_closed(self)

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
        if self._pc.connectionState not in ("connected",):
            await self.close("ice_timeout")

    async def _on_connection_state(self) -> None:
        state = self._pc.connectionState
        log.info("call %s connection %s", self.call_id, state)
        if state in ("failed", "closed"):
            self._spawn(self.close(f"connection_{state}"), "close")

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind != "audio" or self._inbound is not None:
            return
        self._inbound = InboundAudio(track, on_frame=self._on_audio_frame)
        self._inbound.start()

    def _on_datachannel(self, channel: Any) -> None:
        if channel.label != "oai-events" or self._channel is not None:
            return
        self._channel = channel
        dispatcher = ClientEventDispatcher(self)
        channel.on("message", dispatcher.on_message)
        self.send(events.session_created(self.session_dict()))
        for raw in self._pending:
            channel.send(raw)
        self._pending.clear()

    @property
    def last_audio_at(self) -> float | None:
        """Monotonic time of the last packet of inbound audio (None before the first);
        silence fed for a sender gone quiet does not count."""
        return None if self._inbound is None else self._inbound.last_frame_monotonic

    @property
    def peer_connection(self) -> RTCPeerConnection:
        return self._pc

    def session_dict(self) -> dict[str, Any]:
        return self.config.to_dict(self.session_id)

    def send(self, event: dict[str, Any]) -> None:
        for listener in self.listeners:
            try:
                listener(event)
            except Exception:
                log.exception("call %s event listener failed", self.call_id)
        raw = json.dumps(event)
        channel = self._channel
        if channel is None:
            if len(self._pending) < MAX_PENDING_EVENTS:
                self._pending.append(raw)
            return
        if channel.readyState == "open":
            channel.send(raw)

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
        self._dropped_replies = 0
        self._user_item_id = new_id("item")
        self.send(events.speech_started(audio_start_ms, self._user_item_id))
        self.state = State.USER_SPEAKING

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
        timings.dropped_replies = self._dropped_replies
        self.send(events.speech_stopped(stopped.audio_end_ms, item_id))
        turn = self.config.turn_detection or TurnDetectionConfig()
        self.commit_audio(
            item_id,
            stopped.audio,
            timings,
            respond=turn.create_response,
            transcript=transcript,
            only_a_bid=noise_over_reply,
        )

    def reply_in_progress(self) -> bool:
        return self.response is not None and self.response.active

    def speculate(self, transcript: str) -> None:
        """The user paused after `transcript`: start its reply now, held (no events, no
        audio) until the turn really ends, so the wait for the end of the turn and the
        reply's first clause overlap. A pause that was not the end costs only CPU."""
        turn = self.config.turn_detection
        if self.response is not None or turn is None or not turn.create_response:
            return
        if not turn.speculative_reply:
            return
        self.drop_speculation()
        history = [*self.conversation.messages(), ChatMessage("user", transcript)]
        run = self._new_run(history, self.config.instructions, TurnTimings(), held=True)
        self._speculation = run
        self._speculation_key = self._reply_key(history, self.config.instructions)
        run.start()

    def drop_speculation(self) -> None:
        if self._speculation is not None:
            self._speculation.discard()
            self._dropped_replies += 1
        self._speculation = None
        self._speculation_key = None

    def _reply_key(self, history: list[ChatMessage], instructions: str) -> tuple[Any, ...]:
        return (tuple(history), instructions, self.config.voice)

    def _adopt_speculation(self, timings: TurnTimings) -> ResponseRun | None:
        """The held reply, released, if it answers exactly the conversation as it now is."""
        run, key = self._speculation, self._speculation_key
        self._speculation = self._speculation_key = None
        if run is None:
            return None
        current = self._reply_key(self.conversation.messages(), self.config.instructions)
        if key != current or not run.adopt_turn(timings) or not run.release():
            run.discard()
            return None
        self.response = run
        self.state = State.SPEAKING if self.track.playing else State.THINKING
        return run

    def pause_reply(self, onset_at: float) -> None:
        run = self.response
        if run is None:
            return
        audible = self.track.playing
        self.track.pause()
        if run.timings.barge_in_onset is None and audible:
            run.timings.barge_in_onset = onset_at
            self._spawn(self._note_silenced(run), "barge-in-stop")
        self.send(events.hark_interruption("paused", run.id, self.track.playout_ms))

    def resume_reply(self) -> None:
        run = self.response
        if run is None:
            return
        run.timings.false_interruptions += 1
        self.track.resume()
        self.send(events.hark_interruption("resumed", run.id, self.track.playout_ms))

    def interrupt_reply(self) -> None:
        run = self.response
        if run is not None:
            self.send(events.hark_interruption("confirmed", run.id, self.track.playout_ms))
        self.cancel_response("turn_detected")

    async def _note_silenced(self, run: ResponseRun) -> None:
        """Stamp when the track really went silent after the barge-in (its next frame)."""
        for _ in range(50):
            if self.track.silenced_at is not None:
                run.timings.barge_in_silenced = self.track.silenced_at
                return
            await asyncio.sleep(0.01)

    # ---- committing turns ------------------------------------------------------------------

    def commit_audio(
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
        if self.response is None:
            self.state = State.THINKING
        if transcript is None:
            transcript = asyncio.create_task(
                self.engines.stt.transcribe_detailed(audio), name="stt"
            )
        seq = self._turn_seq
        self._spawn(
            self._complete_turn(
                item, previous, audio, transcript, timings, respond, seq, only_a_bid
            ),
            "turn",
        )

    def take_manual_buffer(self) -> np.ndarray:
        audio = np.concatenate(self._manual_buffer) if self._manual_buffer else np.zeros(0, "int16")
        self._manual_buffer.clear()
        return audio

    def spoken_text(self, item_id: str) -> HeardText | None:
        """The text-to-audio map of an assistant item, for `conversation.item.truncate`."""
        if self.response is not None and self.response.item.id == item_id:
            return self.response.spoken
        return self._spoken.get(item_id)

    def apply_config(self, updated: SessionConfig) -> None:
        if updated.turn_detection != self.config.turn_detection:
            self.clear_input()
            if updated.turn_detection is not None:
                self._turns.update(updated.turn_detection)
            self._use_echo_guard(updated.turn_detection)
        self.config = updated

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

    def clear_input(self) -> None:
        self.drop_speculation()
        self._manual_buffer.clear()
        self._turns.reset()
        self._user_item_id = None

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
            heard = await stt
            # Whisper's words for a cough or a click ("Okay.", "you") are not a turn.
            transcript = heard.text.strip() if heard.has_words else ""
            if only_a_bid and not bid_text(heard):
                respond = False  # an "uh-huh" over the reply: heard, not answered
        except Exception as exc:
            log.exception("call %s: transcription failed", self.call_id)
            self.send(events.error("server_error", "transcription_failed", f"STT failed: {exc}"))
            transcript = ""
        timings.mark("stt_done")
        item.text = transcript
        self.send(events.transcription_completed(item.id, transcript, len(audio) / SAMPLE_RATE))
        self.send(events.item_done(previous, item))
        still_current = seq == self._turn_seq and not self._turns.speaking
        if not transcript or not respond or not still_current or self.response is not None:
            if still_current:
                self.drop_speculation()
            if self.state == State.THINKING and self.response is None:
                self.state = State.LISTENING
            return
        if self._adopt_speculation(timings) is None:
            self.start_response(timings)

    # ---- responses ----------------------------------------------------------------------

    def start_response(
        self, timings: TurnTimings | None = None, instructions: str | None = None
    ) -> ResponseRun:
        self.drop_speculation()
        run = self._new_run(
            self.conversation.messages(),
            self.config.instructions if instructions is None else instructions,
            timings or TurnTimings(),
        )
        self.response = run
        self.state = State.THINKING
        run.start()
        return run

    def _new_run(
        self,
        history: list[ChatMessage],
        instructions: str,
        timings: TurnTimings,
        *,
        held: bool = False,
    ) -> ResponseRun:
        return ResponseRun(
            response_id=new_id("resp"),
            conversation=self.conversation,
            llm=self.engines.llm,
            tts=self.engines.tts,
            track=self.track,
            emit=self.send,
            instructions=instructions,
            history=history,
            voice=self.config.voice,
            timings=timings,
            on_finished=self._on_response_finished,
            held=held,
        )

    def cancel_response(self, reason: CancelReason) -> bool:
        if self.response is None:
            return False
        self.response.cancel(reason)
        return True

    def _on_response_finished(self, run: ResponseRun) -> None:
        if self.response is run:
            self.response = None
        self._spoken[run.item.id] = run.spoken
        while len(self._spoken) > MAX_SPOKEN_ITEMS:
            del self._spoken[next(iter(self._spoken))]
        if self.state in (State.THINKING, State.SPEAKING):
            self.state = State.LISTENING

    def _on_playback_started(self, response_id: str) -> None:
        self.send(events.output_audio_buffer("started", response_id))
        if self.response is not None and self.response.id == response_id:
            self.response.timings.mark("first_frame_sent")
            if self.state == State.THINKING:
                self.state = State.SPEAKING

    def _on_playback_stopped(self, response_id: str) -> None:
        self.send(events.output_audio_buffer("stopped", response_id))
