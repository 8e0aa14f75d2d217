"""Conversation items a client sends (`conversation.item.create`, `response.create`'s
`input`), parsed into `Item`s or refused with the parameter named.

Accepted: text messages (`input_text`/`text`/`output_text` parts), `function_call`
items, and `function_call_output` items. Refused by name rather than dropped: image
parts (`input_image`; no model here sees images), audio parts (`input_audio`; over
WebRTC the microphone track carries audio), and item types Hark does not run (MCP).
Whether a `function_call_output` answers a known call is the conversation's to check.
"""

from __future__ import annotations

from typing import Any

from server.protocol.conversation import Item, new_id
from server.protocol.params import InvalidParam
from server.protocol.tools import NAME

MAX_ITEM_TEXT = 16_000
MAX_OUTPUT_CHARS = 32_000
MAX_ID_CHARS = 64
TEXT_PARTS = ("input_text", "text", "output_text")
ITEM_TYPES = ("message", "function_call", "function_call_output")


def parse_item(raw: Any, param: str = "item") -> Item:
    if not isinstance(raw, dict):
        raise InvalidParam(param, f"'{param}' must be an object")
    kind = raw.get("type", "message")
    item_id = raw.get("id") if isinstance(raw.get("id"), str) and raw.get("id") else new_id("item")
    item_id = item_id[:MAX_ID_CHARS]
    if kind == "message":
        return _message(raw, item_id, param)
    if kind == "function_call":
        name = raw.get("name")
        if not isinstance(name, str) or not NAME.match(name):
            raise InvalidParam(f"{param}.name", f"{param}.name must name a function")
        arguments = raw.get("arguments", "")
        if not isinstance(arguments, str) or len(arguments) > MAX_ITEM_TEXT:
            raise InvalidParam(f"{param}.arguments", f"{param}.arguments must be a JSON string")
        call_id = _call_id(raw, param, default=new_id("call"))
        return Item.function_call(item_id, call_id, name, arguments)
    if kind == "function_call_output":
        output = raw.get("output")
        if not isinstance(output, str) or len(output) > MAX_OUTPUT_CHARS:
            raise InvalidParam(
                f"{param}.output", f"{param}.output must be a string of at most {MAX_OUTPUT_CHARS}"
            )
        return Item.function_call_output(item_id, _call_id(raw, param), output)
    raise InvalidParam(
        f"{param}.type",
        f"Items of type {str(kind)[:40]!r} are not supported; use {', '.join(ITEM_TYPES)}",
        code="unsupported_item_type" if isinstance(kind, str) else "invalid_value",
    )


def _call_id(raw: dict[str, Any], param: str, default: str | None = None) -> str:
    call_id = raw.get("call_id", default)
    if not isinstance(call_id, str) or not call_id or len(call_id) > MAX_ID_CHARS:
        raise InvalidParam(f"{param}.call_id", f"{param}.call_id must be a string id")
    return call_id


def _message(raw: dict[str, Any], item_id: str, param: str) -> Item:
    role = raw.get("role")
    if role not in ("user", "assistant", "system"):
        raise InvalidParam(f"{param}.role", f"{param}.role must be user, assistant or system")
    content = raw.get("content")
    if not isinstance(content, list) or not content:
        raise InvalidParam(f"{param}.content", f"{param}.content must be a non-empty list")
    texts = []
    for index, part in enumerate(content):
        where = f"{param}.content[{index}]"
        part_type = part.get("type") if isinstance(part, dict) else None
        if part_type in ("input_image", "image_url", "input_file"):
            raise InvalidParam(
                f"{where}.type",
                "Image and file content is not supported: this server's model reads text",
                code="unsupported_content",
            )
        if part_type in ("input_audio", "audio", "output_audio"):
            raise InvalidParam(
                f"{where}.type",
                "Audio content parts are not accepted over WebRTC: speak on the microphone track",
                code="unsupported_content",
            )
        if part_type not in TEXT_PARTS or not isinstance(part.get("text"), str):
            raise InvalidParam(where, f"{where} must be {{type: 'input_text', text: '...'}}")
        texts.append(part["text"])
    text = " ".join(texts)
    if len(text) > MAX_ITEM_TEXT:
        raise InvalidParam(f"{param}.content", f"Item text exceeds {MAX_ITEM_TEXT} chars")
    kind = "output_text" if role == "assistant" else "input_text"
    return Item(id=item_id, role=role, kind=kind, text=text)
