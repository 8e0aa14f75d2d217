"""The conversation history of one call, as Realtime items.

Items are what clients see (`conversation.item.*` events) and what the LLM is prompted
with. An assistant item's transcript holds only what the user actually heard: barge-in
and `conversation.item.truncate` cut it back to the played prefix.

Besides messages there are the model's tool calls (`function_call`) and the client's
answers to them (`function_call_output`); the LLM gets them in the chat format, each
output right after the assistant turn that made its call.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any, Literal

from server.engines.chat import ChatMessage, ToolCall

ItemStatus = Literal["in_progress", "completed", "incomplete"]
ContentKind = Literal["input_audio", "input_text", "output_audio", "output_text"]
ItemType = Literal["message", "function_call", "function_call_output"]

MAX_ITEMS = 200


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(10)}"


@dataclass
class Item:
    id: str
    role: Literal["user", "assistant", "system"]
    kind: ContentKind
    text: str | None = None
    status: ItemStatus = "completed"
    type: ItemType = "message"
    call_id: str | None = None  # function_call and function_call_output
    name: str | None = None  # function_call: the function
    arguments: str = ""  # function_call: its JSON arguments
    output: str = ""  # function_call_output

    @classmethod
    def function_call(
        cls,
        item_id: str,
        call_id: str,
        name: str,
        arguments: str = "",
        status: ItemStatus = "completed",
    ) -> Item:
        return cls(
            item_id, "assistant", "output_text", status=status, type="function_call",
            call_id=call_id, name=name, arguments=arguments,
        )  # fmt: skip

    @classmethod
    def function_call_output(cls, item_id: str, call_id: str, output: str) -> Item:
        return cls(
            item_id, "user", "input_text", type="function_call_output", call_id=call_id,
            output=output,
        )  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        common = {
            "id": self.id,
            "type": self.type,
            "object": "realtime.item",
            "status": self.status,
        }
        if self.type == "function_call":
            return {
                **common,
                "call_id": self.call_id,
                "name": self.name,
                "arguments": self.arguments,
            }
        if self.type == "function_call_output":
            return {**common, "call_id": self.call_id, "output": self.output}
        part: dict[str, Any] = {"type": self.kind}
        if self.kind in ("input_text", "output_text"):
            part["text"] = self.text or ""
        else:
            part["transcript"] = self.text
        return {
            "id": self.id,
            "type": "message",
            "object": "realtime.item",
            "status": self.status,
            "role": self.role,
            "content": [part],
        }


class Conversation:
    def __init__(self) -> None:
        self._items: list[Item] = []

    def add(self, item: Item) -> str | None:
        """Appends `item`; returns the id of the item before it (`previous_item_id`)."""
        previous = self._items[-1].id if self._items else None
        self._items.append(item)
        if len(self._items) > MAX_ITEMS:  # bounded memory on very long calls
            del self._items[: len(self._items) - MAX_ITEMS]
        return previous

    def get(self, item_id: str) -> Item | None:
        return next((item for item in self._items if item.id == item_id), None)

    def find_call(self, call_id: str) -> Item | None:
        """The `function_call` item with this `call_id`, if the conversation holds it."""
        return next(
            (i for i in self._items if i.type == "function_call" and i.call_id == call_id), None
        )

    def delete(self, item_id: str) -> bool:
        item = self.get(item_id)
        if item is None:
            return False
        self._items.remove(item)
        return True

    @property
    def last_id(self) -> str | None:
        return self._items[-1].id if self._items else None

    def __len__(self) -> int:
        return len(self._items)

    def messages(self) -> list[ChatMessage]:
        return chat_messages(self._items)


def chat_messages(items: list[Item]) -> list[ChatMessage]:
    """The history as chat messages. Items with no text are skipped (a reply cut off
    before any of it was heard); tool calls become an assistant turn's `tool_calls`, each
    followed by its output; a call never answered and an output whose call is gone are
    left out, as strict chat servers refuse either."""
    outputs = {
        item.call_id: item for item in items if item.type == "function_call_output" and item.call_id
    }
    messages: list[ChatMessage] = []
    pending: list[Item] = []  # consecutive answered calls, one assistant turn

    def flush() -> None:
        if not pending:
            return
        calls = tuple(ToolCall(c.call_id or "", c.name or "", c.arguments) for c in pending)
        text = ""
        if messages and messages[-1].role == "assistant" and not messages[-1].tool_calls:
            text = messages.pop().content  # the same reply's words, then its calls
        messages.append(ChatMessage("assistant", text, tool_calls=calls))
        for call in pending:
            answer = outputs[call.call_id or ""]
            messages.append(
                ChatMessage("tool", answer.output, tool_call_id=call.call_id, name=call.name)
            )
        pending.clear()

    for item in items:
        if item.type == "function_call":
            if item.call_id in outputs:
                pending.append(item)
            continue
        flush()
        if item.type == "message" and item.text and item.text.strip():
            messages.append(ChatMessage(item.role, item.text.strip()))
    flush()
    return messages
