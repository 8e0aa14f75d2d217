"""Client → server events on `oai-events`: parsed, validated and applied to a call.

Anything malformed (not JSON, no `type`, an unknown type, a missing or mistyped field, an
oversized message) is answered with an `error` event that echoes the client's
`event_id`; nothing a client sends can raise out of here or end the call.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from server.call.ports import CallControl, CallControlError
from server.protocol import events
from server.protocol.client_stats import ClientStatsError, parse_client_stats
from server.protocol.conversation import Item
from server.protocol.item_input import parse_item
from server.protocol.params import InvalidParam
from server.protocol.response_params import parse_response_params

log = logging.getLogger("hark.events")

# A malformed event is refused exactly like a request the call refuses.
ClientEventError = CallControlError


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
    """Parses each client event, checks its fields, and drives the call through its port."""

    def __init__(self, call: CallControl, *, max_event_bytes: int, call_id: str = "") -> None:
        self.call = call
        self.max_event_bytes = max_event_bytes
        self.call_id = call_id
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
            if len(raw) > self.max_event_bytes:
                raise ClientEventError(
                    "message_too_large",
                    f"Event of {len(raw)} bytes exceeds {self.max_event_bytes} bytes",
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
            self.call.report_error(
                "invalid_request_error", exc.code, exc.message, param=exc.param, event_id=event_id
            )
        except InvalidParam as exc:  # a field Hark refuses, named (e.g. `item.content[0]`)
            self.call.report_error(
                "invalid_request_error", exc.code, str(exc), param=exc.param, event_id=event_id
            )
        except Exception:
            log.exception("call %s: client event failed", self.call_id)
            self.call.report_error(
                "server_error",
                "internal_error",
                "The event could not be processed",
                event_id=event_id,
            )

    # ---- session and input ---------------------------------------------------------------

    def session_update(self, event: dict[str, Any]) -> None:
        self.call.update_session(_field(event, "session", dict))

    def input_append(self, event: dict[str, Any]) -> None:
        self.call.append_input(_field(event, "audio", str))

    def input_commit(self, event: dict[str, Any]) -> None:
        self.call.commit_input()

    def input_clear(self, event: dict[str, Any]) -> None:
        self.call.clear_input()

    # ---- conversation items --------------------------------------------------------------

    def item_create(self, event: dict[str, Any]) -> None:
        self.call.add_item(parse_item(_field(event, "item", dict)))

    def _item(self, event: dict[str, Any]) -> Item:
        item_id = _field(event, "item_id", str)
        item = self.call.find_item(item_id)
        if item is None:
            raise ClientEventError("item_not_found", f"No item with id '{item_id[:64]}'", "item_id")
        return item

    def item_retrieve(self, event: dict[str, Any]) -> None:
        self.call.send(events.item_retrieved(self._item(event)))

    def item_delete(self, event: dict[str, Any]) -> None:
        self.call.delete_item(self._item(event).id)

    def item_truncate(self, event: dict[str, Any]) -> None:
        item = self._item(event)
        audio_end_ms = _field(event, "audio_end_ms", int)
        if event.get("content_index", 0) != 0:
            raise ClientEventError("invalid_value", "content_index must be 0", "content_index")
        self.call.truncate(item.id, audio_end_ms)

    # ---- responses -----------------------------------------------------------------------

    def response_create(self, event: dict[str, Any]) -> None:
        self.call.create_response(parse_response_params(event.get("response")))

    def response_cancel(self, event: dict[str, Any]) -> None:
        wanted = event.get("response_id")
        self.call.cancel_response(None if wanted is None else str(wanted))

    def output_clear(self, event: dict[str, Any]) -> None:
        self.call.clear_output()

    # ---- Hark extensions -----------------------------------------------------------------

    def client_stats(self, event: dict[str, Any]) -> None:
        """The browser's own view of the call, kept beside the server's (no reply)."""
        try:
            stats = parse_client_stats(event.get("stats"))
        except ClientStatsError as exc:
            raise ClientEventError("invalid_value", str(exc), exc.param) from exc
        self.call.client_stats(stats)
