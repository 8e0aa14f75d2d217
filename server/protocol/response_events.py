"""Server events of one response, in OpenAI Realtime's GA shapes (checked against the
openai SDK's `types/realtime`): the response resource, its output items (an assistant
message spoken or written, function calls) and their content.

A response's output is numbered: each item gets the next `output_index` when it is
added, and every event about it carries that index; `response.done` lists the items in
that order. A message item is `output_audio` (spoken, with its transcript) or
`output_text`; its content part is `{"type": "audio", "transcript"}` or
`{"type": "text", "text"}`. A function call item is announced with empty `arguments`,
which then stream as `response.function_call_arguments.delta` and `.done`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from server.protocol.conversation import Item
from server.protocol.events import Event, event, item_done
from server.protocol.session_config import Modality, max_tokens_value

PCM = {"type": "audio/pcm", "rate": 24000}


@dataclass(frozen=True)
class ResponseShape:
    """What a response was asked to be; echoed in `response.created` and `.done`."""

    id: str
    voice: str
    modality: Modality = "audio"
    in_conversation: bool = True
    metadata: dict[str, str] | None = None
    max_output_tokens: int | None = None
    # The stored conversation the reply joins (None: the call keeps no history).
    conversation_id: str | None = None
    output_format: dict[str, Any] | None = None  # the session's audio.output.format

    def resource(
        self,
        status: str,
        output: list[dict[str, Any]],
        status_details: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        return {
            "object": "realtime.response",
            "id": self.id,
            "status": status,
            "status_details": status_details,
            "output": output,
            "conversation_id": (self.conversation_id or "conv_default")
            if self.in_conversation
            else None,
            "output_modalities": [self.modality],
            "max_output_tokens": max_tokens_value(self.max_output_tokens),
            "audio": {"output": {"format": self.output_format or PCM, "voice": self.voice}},
            "usage": None,
            "metadata": self.metadata,
        }


def response_created(shape: ResponseShape) -> Event:
    return event("response.created", response=shape.resource("in_progress", []))


def response_done(
    shape: ResponseShape, status: str, reason: str | None, output: list[Item]
) -> Event:
    details: dict[str, Any] | None = None
    if status == "cancelled":
        details = {"type": "cancelled", "reason": reason}
    elif status == "incomplete":
        details = {"type": "incomplete", "reason": reason}
    elif status == "failed":
        code = reason or "response_failed"  # an engine fault's code (server.engines.faults)
        details = {"type": "failed", "error": {"type": "server_error", "code": code}}
    resource = shape.resource(status, [item.to_dict() for item in output], details)
    return event("response.done", response=resource)


def output_item_added(response_id: str, index: int, item: Item) -> Event:
    shown = item.to_dict()
    if item.type == "message":
        shown["content"] = []
    elif item.type == "function_call":
        shown["arguments"] = ""
    return event(
        "response.output_item.added", response_id=response_id, output_index=index, item=shown
    )


def output_item_done(response_id: str, index: int, item: Item) -> Event:
    return event(
        "response.output_item.done",
        response_id=response_id,
        output_index=index,
        item=item.to_dict(),
    )


def _part(item: Item, text: str) -> dict[str, Any]:
    if item.kind == "output_audio":
        return {"type": "audio", "transcript": text}
    return {"type": "text", "text": text}


def _where(response_id: str, index: int, item: Item) -> dict[str, Any]:
    return {
        "response_id": response_id,
        "item_id": item.id,
        "output_index": index,
        "content_index": 0,
    }


def content_part_added(response_id: str, index: int, item: Item) -> Event:
    return event(
        "response.content_part.added", **_where(response_id, index, item), part=_part(item, "")
    )


def text_delta(response_id: str, index: int, item: Item, delta: str) -> Event:
    """A spoken reply's transcript, or a written reply's text, grows by `delta`."""
    kind = (
        "response.output_audio_transcript.delta"
        if item.kind == "output_audio"
        else "response.output_text.delta"
    )
    return event(kind, **_where(response_id, index, item), delta=delta)


def message_finished(
    response_id: str, index: int, item: Item, previous_item_id: str | None, in_conversation: bool
) -> list[Event]:
    """The closing events of a message item, from its content to `output_item.done`."""
    where = _where(response_id, index, item)
    text = item.text or ""
    if item.kind == "output_audio":
        closing = [
            event("response.output_audio.done", **where),
            event("response.output_audio_transcript.done", **where, transcript=text),
        ]
    else:
        closing = [event("response.output_text.done", **where, text=text)]
    closing += [
        event("response.content_part.done", **where, part=_part(item, text)),
        output_item_done(response_id, index, item),
    ]
    if in_conversation:
        closing.append(item_done(previous_item_id, item))
    return closing


def _call_where(response_id: str, index: int, item: Item) -> dict[str, Any]:
    return {
        "response_id": response_id,
        "item_id": item.id,
        "output_index": index,
        "call_id": item.call_id,
    }


def arguments_delta(response_id: str, index: int, item: Item, delta: str) -> Event:
    return event(
        "response.function_call_arguments.delta",
        **_call_where(response_id, index, item),
        delta=delta,
    )


def call_finished(
    response_id: str, index: int, item: Item, previous_item_id: str | None, in_conversation: bool
) -> list[Event]:
    """`function_call_arguments.done` (with the whole arguments), then the item done."""
    closing = [
        event(
            "response.function_call_arguments.done",
            **_call_where(response_id, index, item),
            name=item.name,
            arguments=item.arguments,
        ),
        output_item_done(response_id, index, item),
    ]
    if in_conversation:
        closing.append(item_done(previous_item_id, item))
    return closing
