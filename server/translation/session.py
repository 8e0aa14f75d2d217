"""One live interpretation: source audio in, translated text and speech out, continuously.

Frames (16 kHz, 32 ms) from the transport go through Silero and a segmenter tuned for
interpretation: a short pause (`PAUSE_MS`) or `MAX_SEGMENT_MS` of talk closes a segment,
so translation starts while the speaker goes on. Two stages run beside the audio path:
one hears and translates segments in order, the other speaks them in order, so segment
N is spoken while N+1 is being heard. Every event carries `elapsed_ms`, the input
position (in 200 ms frames) of the segment's end, to align output with input.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from media.segmenter import SpeechSegmenter, SpeechStopped, TurnDetection
from media.vad import SileroModel, SileroVad
from server.errors import HarkError
from server.protocol.conversation import new_id
from server.protocol.events import error as error_event
from server.protocol.events import event
from server.translation.interpreter import Interpreter
from server.translation.settings import TranslationSettings

log = logging.getLogger("hark.translation")

PAUSE_MS = 300
MAX_SEGMENT_MS = 8_000  # fits Whisper's 10 s window (server.translation.whisper_pass)
FRAME_MS = 200  # elapsed_ms advances in the engine's 200 ms frames
MAX_WAITING_SEGMENTS = 16
MAX_RECORDED_SEGMENTS = 200


class AudioOut(Protocol):
    """Where translated speech goes: base64 events (WebSocket) or an RTP track (WebRTC)."""

    def begin(self, segment_id: str) -> None: ...

    def play(self, pcm: np.ndarray, rate: int, elapsed_ms: int) -> None: ...

    async def end(self) -> None:
        """The segment's speech is all handed over (played out, for a track)."""


@dataclass
class Segment:
    id: str
    audio: np.ndarray
    elapsed_ms: int
    speech_end_at: float  # monotonic time the input clock passed the end of speech
    source_language: str = ""
    source_text: str = ""
    target: str = ""  # the language it was translated into (a later update may change it)
    text: str = ""
    first_audio_at: float | None = None

    def record(self) -> dict[str, Any]:
        latency = None
        if self.first_audio_at is not None:
            latency = round((self.first_audio_at - self.speech_end_at) * 1000)
        return {
            "id": self.id,
            "elapsed_ms": self.elapsed_ms,
            "source_language": self.source_language,
            "source_text": self.source_text,
            "text": self.text,
            "latency_ms": latency,
        }


@dataclass
class SessionStats:
    segments: list[dict[str, Any]] = field(default_factory=list)
    errors: int = 0


class TranslationSession:
    def __init__(
        self,
        session_id: str,
        settings: TranslationSettings,
        interpreter: Interpreter,
        vad_model: SileroModel,
        *,
        expires_at: int,
        send: Callable[[dict[str, Any]], None],
        audio_out: AudioOut,
        transport: str,
    ) -> None:
        self.id = session_id
        self.settings = settings
        self.expires_at = expires_at
        self.transport = transport
        self.started_at = time.time()
        self.closed = False
        self.stats = SessionStats()
        self.on_closed: list[Callable[[TranslationSession], None]] = []
        self._interpreter = interpreter
        self._send = send
        self._out = audio_out
        self._vad = SileroVad(vad_model)
        self._segmenter = SpeechSegmenter(
            TurnDetection(threshold=0.5, prefix_padding_ms=200, silence_duration_ms=PAUSE_MS),
            max_segment_ms=MAX_SEGMENT_MS,
        )
        self._heard: asyncio.Queue[Segment | None] = asyncio.Queue(MAX_WAITING_SEGMENTS)
        self._spoken: asyncio.Queue[Segment | None] = asyncio.Queue()
        self._audio_end_ms = 0
        self._said_source = False
        self._said_target = False
        self._tasks = [
            asyncio.create_task(self._understand(), name=f"{session_id}-translate"),
            asyncio.create_task(self._speak(), name=f"{session_id}-speak"),
        ]

    # ---- events to the client --------------------------------------------------------------

    def session_object(self) -> dict[str, Any]:
        return self.settings.to_dict(self.id, self.expires_at)

    def emit(self, payload: dict[str, Any]) -> None:
        if not self.closed:
            self._send(payload)

    def report(
        self, code: str, message: str, *, param: str | None = None, event_id: Any = None
    ) -> None:
        self.stats.errors += 1
        client_event = event_id if isinstance(event_id, str) else None
        self.emit(
            error_event("invalid_request_error", code, message, param=param, event_id=client_event)
        )

    def created(self) -> None:
        self._interpreter.prepare(self.settings.target)
        self.emit(event("session.created", session=self.session_object()))

    def update(self, raw: Any, event_id: Any = None) -> None:
        """`session.update`: a refused change (an unknown pair) leaves the session as it was."""
        try:
            settings = self.settings.apply(raw)
            self._interpreter.capabilities.check_target(
                settings.target, "session.audio.output.language"
            )
        except HarkError as exc:
            self.report(exc.code, exc.message, param=exc.param, event_id=event_id)
            return
        self.settings = settings
        self._interpreter.prepare(settings.target)
        self.emit(event("session.updated", session=self.session_object()))

    # ---- audio in ----------------------------------------------------------------------

    def on_frame(self, frame: np.ndarray, audio_end_ms: int) -> None:
        """One 32 ms frame at 16 kHz, on the event loop (Silero costs ~0.3 ms)."""
        if self.closed:
            return
        self._audio_end_ms = audio_end_ms
        probability = self._vad(frame)
        for change in self._segmenter.push(frame, probability, audio_end_ms):
            if isinstance(change, SpeechStopped):
                self._segment(change)

    def _segment(self, stop: SpeechStopped) -> None:
        speech_end_ms = stop.audio_end_ms - stop.trailing_silence_ms
        segment = Segment(
            id=new_id("seg"),
            audio=stop.audio,
            elapsed_ms=max(FRAME_MS, -(-speech_end_ms // FRAME_MS) * FRAME_MS),
            speech_end_at=time.monotonic() - stop.trailing_silence_ms / 1000,
        )
        try:
            self._heard.put_nowait(segment)
        except asyncio.QueueFull:
            self.report(
                "translation_backlog",
                "Translation is behind the speaker; a segment of source speech was dropped",
            )

    # ---- the two stages ----------------------------------------------------------------

    async def _understand(self) -> None:
        while (segment := await self._heard.get()) is not None:
            try:
                await self._translate(segment)
            except HarkError as exc:
                self.report(exc.code, exc.message)
            except Exception as exc:
                log.exception("translation %s: segment %s failed", self.id, segment.id)
                self.report("translation_failed", f"A segment could not be translated: {exc}"[:300])
        await self._spoken.put(None)

    async def _translate(self, segment: Segment) -> None:
        settings = self.settings
        segment.target = settings.target
        result = await self._interpreter.interpret(
            segment.audio, settings.source_language, settings.target
        )
        if result is None:
            return
        segment.source_language, segment.source_text = result.language, result.source_text
        if settings.transcription_model:
            self.emit(
                self._delta("session.input_transcript.delta", result.source_text, segment, True)
            )
        segment.text = result.text
        if segment.text:
            self.emit(self._delta("session.output_transcript.delta", segment.text, segment, False))
            await self._spoken.put(segment)

    def _delta(self, type_: str, text: str, segment: Segment, source: bool) -> dict[str, Any]:
        """Append-only: a space joins segments, so clients never insert one themselves."""
        said = self._said_source if source else self._said_target
        if source:
            self._said_source = True
        else:
            self._said_target = True
        return event(type_, delta=(" " if said else "") + text, elapsed_ms=segment.elapsed_ms)

    async def _speak(self) -> None:
        while (segment := await self._spoken.get()) is not None:
            try:
                self._out.begin(segment.id)
                async for pcm, rate in self._interpreter.speak(segment.text, segment.target):
                    if segment.first_audio_at is None:
                        segment.first_audio_at = time.monotonic()
                    self._out.play(pcm, rate, segment.elapsed_ms)
                await self._out.end()
            except Exception as exc:
                log.exception("translation %s: speaking %s failed", self.id, segment.id)
                self.report("tts_failed", f"The translation could not be spoken: {exc}"[:300])
            self._record(segment)

    def _record(self, segment: Segment) -> None:
        segments = self.stats.segments
        segments.append(segment.record())
        del segments[:-MAX_RECORDED_SEGMENTS]

    # ---- client events -----------------------------------------------------------------

    def dispatch(self, raw: str | bytes, append: Callable[[str], None], max_bytes: int) -> bool:
        """One client event; returns True for `session.close`. Bad events get `error`."""
        if len(raw) > max_bytes:
            self.report(
                "event_too_large",
                f"The event is {len(raw)} bytes; events may be at most {max_bytes} bytes "
                "(send audio in 200 ms appends)",
            )
            return False
        try:
            message = json.loads(raw)
        except ValueError:
            self.report("invalid_json", "The event is not valid JSON")
            return False
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            self.report("invalid_event", "An event must be a JSON object with a 'type'")
            return False
        kind, event_id = message["type"], message.get("event_id")
        if kind == "session.input_audio_buffer.append":
            audio = message.get("audio")
            if not isinstance(audio, str):
                self.report(
                    "invalid_audio",
                    "'audio' must be a base64 string",
                    param="audio",
                    event_id=event_id,
                )
                return False
            try:
                append(audio)
            except HarkError as exc:
                self.report(exc.code, exc.message, param=exc.param, event_id=event_id)
            except Exception as exc:  # CallControlError from the appended-audio decoder
                code = getattr(exc, "code", "invalid_audio")
                self.report(
                    code, getattr(exc, "message", str(exc)), param="audio", event_id=event_id
                )
            return False
        if kind == "session.update":
            self.update(message.get("session"), event_id)
            return False
        if kind == "session.close":
            return True
        self.report(
            "unknown_event",
            f"Unknown event type '{kind[:64]}' (translation sessions take session.update, "
            "session.input_audio_buffer.append and session.close)",
            event_id=event_id,
        )
        return False

    # ---- the end -----------------------------------------------------------------------

    async def finish(self) -> None:
        """`session.close`: translate and speak what was said, then `session.closed`."""
        last = self._segmenter.end_turn(self._audio_end_ms)
        if last is not None:
            self._segment(last)
        await self._heard.put(None)
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*self._tasks)
        self.emit(event("session.closed"))

    async def close(self) -> None:
        """Stop everything now (the connection went away, or after `finish`)."""
        if self.closed:
            return
        self.closed = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for callback in self.on_closed:
            callback(self)

    def summary(self) -> dict[str, Any]:
        """The operator's row: languages and each segment's latency."""
        latencies = [s["latency_ms"] for s in self.stats.segments if s["latency_ms"] is not None]
        return {
            "id": self.id,
            "transport": self.transport,
            "model": self.settings.model,
            "output_language": self.settings.output_language,
            "source_languages": sorted(
                {s["source_language"] for s in self.stats.segments if s["source_language"]}
            ),
            "segments": len(self.stats.segments),
            "latency_ms_last": latencies[-1] if latencies else None,
            "latency_ms_max": max(latencies) if latencies else None,
            "errors": self.stats.errors,
            "started_at": int(self.started_at),
            "state": "closed" if self.closed else "live",
        }
