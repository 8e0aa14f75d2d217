"""Client → server events on `oai-events`: parsed, validated and applied to a session.

Anything malformed (not JSON, no `type`, an unknown type, a missing or mistyped field, an
oversized message) is answered with an `error` event that echoes the client's
`event_id`; nothing a client sends can raise out of here or end the call.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from server import events
from server.client_stats import ClientStatsError, parse_client_stats
from server.conversation import Item, new_id
from server.session_config import SessionConfigError
from server.turn_metrics import TurnTimings, now

if TYPE_CHECKING:
    from server.session import RealtimeSession

log = logging.getLogger("hark.events")

MAX_ITEM_TEXT = 16_000
MIN_COMMIT_SAMPLES = 1_600  # 100 ms at 16 kHz, as OpenAI requires


class ClientEventError(Exception):
    def __init__(self, code: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param


def _field(event: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    value = event.get(name)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        kinds = kind if isinstance(kind, tuple) else (kind,)
        names = " or ".join(
            k.__name__.replace("str", "string").replace("dict", "object") for k in kinds
        )
        raise ClientEventError("invalid_value", f"'{name}' must be a {names}", name)
    return value


class ClientEventDispatcher:
    def __init__(self, session: RealtimeSession) -> None:
        self.session = session
        self._handlers: dict[str, Callable[[dict[str, Any]], None]] = {
            "session.update": self.session_update,
            "input_audio_buffer.append": self.input_append,
            "input_audio_buffer.commit": self.input_commit,
            "input_audio_buffer.clear": self.input_clear,
            "conversation.item.create": self.item_create,
            "conversation.item.retrieve": self.item_retrieve,
            "conversation.item.delete": self.item_delete,
            "conversation.item.truncate": self.item_truncate,
            "response.create": self.response_create,
            "response.cancel": self.response_cancel,
            "output_audio_buffer.clear": self.output_clear,
            "hark.client_stats": self.client_stats,
        }

    def on_message(self, raw: str | bytes) -> None:
        event_id = None
        try:
            if len(raw) > self.session.max_event_bytes:
                raise ClientEventError(
                    "message_too_large",
                    f"Event of {len(raw)} bytes exceeds {self.session.max_event_bytes} bytes",
                )
            try:
                event = json.loads(raw)
            except (ValueError, UnicodeDecodeError) as exc:
                raise ClientEventError("invalid_json", f"Event is not valid JSON: {exc}") from exc
            if not isinstance(event, dict):
                raise ClientEventError("invalid_event", "An event must be a JSON object")
            event_id = event.get("event_id") if isinstance(event.get("event_id"), str) else None
            kind = _field(event, "type", str)
            handler = self._handlers.get(kind)
            if handler is None:
                raise ClientEventError(
                    "unknown_event", f"Unknown event type '{kind[:100]}'", "type"
                )
            handler(event)
        except ClientEventError as exc:
            self.session.send(
                events.error(
                    "invalid_request_error",
                    exc.code,
                    exc.message,
                    param=exc.param,
                    event_id=event_id,
                )
            )
        except Exception:
            log.exception("call %s: client event failed", self.session.call_id)
            self.session.send(
                events.error(
                    "server_error",
                    "internal_error",
                    "The event could not be processed",
                    event_id=event_id,
                )
            )

    # ---- session and input ---------------------------------------------------------------

    def session_update(self, event: dict[str, Any]) -> None:
        session = self.session
        try:
            updated = session.config.apply(_field(event, "session", dict))
        except SessionConfigError as exc:
            raise ClientEventError("invalid_value", str(exc), exc.param) from exc
        session.apply_config(updated)
        session.send(events.session_updated(session.session_dict()))

    def input_append(self, event: dict[str, Any]) -> None:
        raise ClientEventError(
            "unsupported_over_webrtc",
            "Over WebRTC, input audio comes from the microphone track, not from events",
        )

    def input_commit(self, event: dict[str, Any]) -> None:
        session = self.session
        if session.config.turn_detection is not None:
            raise ClientEventError(
                "input_audio_buffer_commit_empty",
                "With server_vad, turns are committed by the server; set "
                "turn_detection to null to commit manually",
            )
        audio = session.take_manual_buffer()
        if len(audio) < MIN_COMMIT_SAMPLES:
            raise ClientEventError(
                "input_audio_buffer_commit_empty",
                "Buffer too small: at least 100 ms of audio is needed",
            )
        timings = TurnTimings(speech_stopped=now(), speech_end=now())
        session.commit_audio(new_id("item"), audio, timings, respond=False)

    def input_clear(self, event: dict[str, Any]) -> None:
        self.session.clear_input()
        self.session.send(events.input_cleared())

    # ---- conversation items --------------------------------------------------------------

    def item_create(self, event: dict[str, Any]) -> None:
        raw = _field(event, "item", dict)
        if raw.get("type", "message") != "message":
            raise ClientEventError(
                "invalid_value", "Only items of type 'message' are supported", "item.type"
            )
        role = raw.get("role")
        if role not in ("user", "assistant", "system"):
            raise ClientEventError(
                "invalid_value", "item.role must be user, assistant or system", "item.role"
            )
        content = raw.get("content")
        if not isinstance(content, list) or not content:
            raise ClientEventError(
                "invalid_value", "item.content must be a non-empty list", "item.content"
            )
        texts = []
        for part in content:
            if (
                not isinstance(part, dict)
                or part.get("type") not in ("input_text", "text", "output_text")
                or not isinstance(part.get("text"), str)
            ):
                raise ClientEventError(
                    "invalid_value",
                    "Each content part must be {type: 'input_text', text: '...'}; "
                    "audio parts are sent over the microphone track",
                    "item.content",
                )
            texts.append(part["text"])
        text = " ".join(texts)
        if len(text) > MAX_ITEM_TEXT:
            raise ClientEventError(
                "invalid_value", f"Item text exceeds {MAX_ITEM_TEXT} chars", "item.content"
            )
        item_id = raw.get("id") if isinstance(raw.get("id"), str) else new_id("item")
        kind = "output_text" if role == "assistant" else "input_text"
        item = Item(id=item_id[:64], role=role, kind=kind, text=text)
        previous = self.session.conversation.add(item)
        self.session.send(events.item_added(previous, item))
        self.session.send(events.item_done(previous, item))

    def _item(self, event: dict[str, Any]) -> Item:
        item_id = _field(event, "item_id", str)
        item = self.session.conversation.get(item_id)
        if item is None:
            raise ClientEventError("item_not_found", f"No item with id '{item_id[:64]}'", "item_id")
        return item

    def item_retrieve(self, event: dict[str, Any]) -> None:
        self.session.send(events.item_retrieved(self._item(event)))

    def item_delete(self, event: dict[str, Any]) -> None:
        item = self._item(event)
        self.session.conversation.delete(item.id)
        self.session.send(events.item_deleted(item.id))

    def item_truncate(self, event: dict[str, Any]) -> None:
        item = self._item(event)
        audio_end_ms = _field(event, "audio_end_ms", int)
        content_index = event.get("content_index", 0)
        if content_index != 0:
            raise ClientEventError("invalid_value", "content_index must be 0", "content_index")
        spoken = self.session.spoken_text(item.id)
        if item.role != "assistant" or spoken is None:
            raise ClientEventError(
                "invalid_value", "Only assistant audio items can be truncated", "item_id"
            )
        if not 0 <= audio_end_ms <= spoken.audio_ms + 1:
            raise ClientEventError(
                "invalid_value",
                f"audio_end_ms {audio_end_ms} is outside the item's {int(spoken.audio_ms)} ms",
                "audio_end_ms",
            )
        response = self.session.response
        if response is not None and response.item is item:
            response.cancel("client_cancelled")
        item.text = spoken.heard(audio_end_ms)
        self.session.send(events.item_truncated(item.id, 0, audio_end_ms))

    # ---- responses -----------------------------------------------------------------------

    def response_create(self, event: dict[str, Any]) -> None:
        if self.session.response is not None:
            raise ClientEventError(
                "conversation_already_has_active_response",
                f"Response {self.session.response.id} is still in progress",
            )
        options = event.get("response", {})
        if not isinstance(options, dict):
            raise ClientEventError("invalid_value", "'response' must be an object", "response")
        instructions = options.get("instructions")
        if instructions is not None and not isinstance(instructions, str):
            raise ClientEventError(
                "invalid_value", "response.instructions must be a string", "response.instructions"
            )
        self.session.start_response(instructions=instructions)

    def response_cancel(self, event: dict[str, Any]) -> None:
        response = self.session.response
        wanted = event.get("response_id")
        if response is None or (wanted is not None and wanted != response.id):
            raise ClientEventError(
                "response_cancel_not_active", "There is no active response to cancel"
            )
        self.session.cancel_response("client_cancelled")

    def output_clear(self, event: dict[str, Any]) -> None:
        session = self.session
        if session.response is not None:
            response_id = session.response.id
            playing = session.response.timings.first_frame_sent is not None
            session.cancel_response("client_cancelled")
            if not playing:
                session.send(events.output_audio_buffer("cleared", response_id))
            return
        response_id = session.track.response_id
        session.track.clear()
        session.send(events.output_audio_buffer("cleared", response_id or ""))

    # ---- Hark extensions -----------------------------------------------------------------

    def client_stats(self, event: dict[str, Any]) -> None:
        """The browser's own view of the call, kept beside the server's (no reply)."""
        try:
            stats = parse_client_stats(event.get("stats"))
        except ClientStatsError as exc:
            raise ClientEventError("invalid_value", str(exc), exc.param) from exc
        for listener in self.session.client_stats_listeners:
            listener(stats)
