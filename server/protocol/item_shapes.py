"""Conversation items as plain Realtime-shaped dicts: checked, normalized, read back.

The durable history keeps every item exactly as a Realtime client sees it
(`{"id", "type": "message", "role", "content": [...]}`, `function_call`,
`function_call_output`), so tool items and future kinds persist and replay without a
schema change. Items sent to `POST /v1/conversations` may also use the Responses API's
shorthand (`{"role": "user", "content": "Hi"}`) and are normalized here.
"""

from __future__ import annotations

import re
from typing import Any

from server.engines.base import ChatMessage
from server.errors import InvalidInput
from server.protocol.conversation import Item, new_id

MAX_ITEM_CHARS = 16_000
MAX_ID_CHARS = 64
ITEM_ID = re.compile(r"[A-Za-z0-9_\-.:]{1,64}")
ROLES = ("user", "assistant", "system", "developer")
# Content part types per role, and the key that holds their text.
TEXT_KEYS = {"input_text": "text", "output_text": "text", "text": "text"}
TRANSCRIPT_KEYS = {"input_audio": "transcript", "output_audio": "transcript"}


def _bad(message: str, param: str) -> InvalidInput:
    return InvalidInput("invalid_item", message, param=param)


def _string(raw: dict[str, Any], key: str, param: str, *, limit: int = MAX_ITEM_CHARS) -> str:
    value = raw.get(key)
    if not isinstance(value, str):
        raise _bad(f"{param}.{key} must be a string", f"{param}.{key}")
    if len(value) > limit:
        raise _bad(f"{param}.{key} is longer than {limit} characters", f"{param}.{key}")
    return value


def _content(role: str, raw: Any, param: str) -> list[dict[str, Any]]:
    if isinstance(raw, str):
        kind = "input_text" if role != "assistant" else "output_text"
        raw = [{"type": kind, "text": raw}]
    if not isinstance(raw, list) or not raw:
        raise _bad(f"{param}.content must be a string or a non-empty list", f"{param}.content")
    parts = []
    for index, part in enumerate(raw):
        where = f"{param}.content[{index}]"
        if not isinstance(part, dict):
            raise _bad(f"{where} must be an object", where)
        kind = part.get("type")
        if kind == "text":
            kind = "input_text" if role != "assistant" else "output_text"
        if kind in ("input_text", "output_text"):
            parts.append({"type": kind, "text": _string(part, "text", where)})
        elif kind in ("input_audio", "output_audio"):
            transcript = part.get("transcript")
            if transcript is not None:
                transcript = _string(part, "transcript", where)
            # Audio bytes are not kept in the history, only what was said.
            parts.append({"type": kind, "transcript": transcript})
        else:
            raise _bad(
                f"{where}.type must be input_text, output_text, input_audio or output_audio",
                f"{where}.type",
            )
    return parts


def normalize_item(raw: Any, param: str = "item") -> dict[str, Any]:
    """A client-supplied item as a completed Realtime item dict; raises InvalidInput."""
    if not isinstance(raw, dict):
        raise _bad(f"{param} must be an object", param)
    kind = raw.get("type", "message")
    item_id = raw.get("id")
    if item_id is None:
        item_id = new_id("item")
    elif not isinstance(item_id, str) or not ITEM_ID.fullmatch(item_id):
        raise _bad(f"{param}.id must be 1-{MAX_ID_CHARS} letters, digits or _-.:", f"{param}.id")
    base = {"id": item_id, "object": "realtime.item", "status": "completed"}
    if kind == "message":
        role = raw.get("role")
        if role not in ROLES:
            raise _bad(f"{param}.role must be one of {', '.join(ROLES)}", f"{param}.role")
        role = "system" if role == "developer" else role
        content = _content(role, raw.get("content"), param)
        return {**base, "type": "message", "role": role, "content": content}
    if kind == "function_call":
        return {
            **base,
            "type": "function_call",
            "call_id": _string(raw, "call_id", param, limit=MAX_ID_CHARS),
            "name": _string(raw, "name", param, limit=MAX_ID_CHARS),
            "arguments": _string(raw, "arguments", param),
        }
    if kind == "function_call_output":
        return {
            **base,
            "type": "function_call_output",
            "call_id": _string(raw, "call_id", param, limit=MAX_ID_CHARS),
            "output": _string(raw, "output", param),
        }
    raise _bad(
        f"{param}.type must be message, function_call or function_call_output", f"{param}.type"
    )


def item_text(item: dict[str, Any]) -> str:
    """The words of a message item (its texts and transcripts), '' for other kinds."""
    if item.get("type") != "message":
        return ""
    words = []
    for part in item.get("content") or []:
        if not isinstance(part, dict):
            continue
        key = TEXT_KEYS.get(str(part.get("type"))) or TRANSCRIPT_KEYS.get(str(part.get("type")))
        value = part.get(key) if key else None
        if isinstance(value, str) and value.strip():
            words.append(value.strip())
    return " ".join(words)


def worth_keeping(item: dict[str, Any]) -> bool:
    """Messages with no words (noise, a reply cut before any of it was heard) are not
    history; tool calls and their outputs always are."""
    return item.get("type") != "message" or bool(item_text(item))


def to_chat(item: dict[str, Any]) -> ChatMessage | None:
    """What the LLM is shown of a stored item (messages only)."""
    text = item_text(item)
    role = item.get("role")
    if not text or role not in ("user", "assistant", "system"):
        return None
    return ChatMessage(role, text)


def to_item(item: dict[str, Any]) -> Item | None:
    """A stored message as a live conversation Item (None for kinds Item cannot hold)."""
    if item.get("type") != "message" or item.get("role") not in ("user", "assistant", "system"):
        return None
    parts = [p for p in item.get("content") or [] if isinstance(p, dict)]
    kinds = {p.get("type") for p in parts}
    if item["role"] == "assistant":
        kind = "output_audio" if "output_audio" in kinds else "output_text"
    else:
        kind = "input_audio" if "input_audio" in kinds else "input_text"
    status = item.get("status")
    return Item(
        id=str(item.get("id")),
        role=item["role"],
        kind=kind,
        text=item_text(item),
        status=status if status in ("completed", "incomplete") else "completed",
    )
