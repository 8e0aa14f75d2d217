"""The conversation history of one call, as Realtime items.

Items are what clients see (`conversation.item.*` events) and what the LLM is prompted
with. An assistant item's transcript holds only what the user actually heard: barge-in
and `conversation.item.truncate` cut it back to the played prefix.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any, Literal

from server.engines.base import ChatMessage

ItemStatus = Literal["in_progress", "completed", "incomplete"]
ContentKind = Literal["input_audio", "input_text", "output_audio", "output_text"]

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

    def to_dict(self) -> dict[str, Any]:
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
        """The history as chat messages, skipping items with no text (e.g. a reply cut
        off before any of it was heard)."""
        return [
            ChatMessage(item.role, item.text.strip())
            for item in self._items
            if item.text and item.text.strip()
        ]
