"""The output items of one response and the events that announce them, in order.

A response may hold a message (spoken or written) and function calls. Each item gets
its `output_index` when it first appears: the message at its first word, a call at its
first delta. Everything the client sees goes through `do`, which the response runs at
once or, for a reply held at a pause, keeps until it is released, so a held reply's
items reach the conversation only if it is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from server.engines.chat import ToolCallDelta
from server.protocol import events
from server.protocol import response_events as rev
from server.protocol.conversation import Conversation, Item, ItemStatus, new_id

Emit = Callable[[dict[str, Any]], None]
Effect = Callable[[], None]


class ResponseOutput:
    def __init__(
        self,
        shape: rev.ResponseShape,
        message: Item,
        conversation: Conversation,
        emit: Emit,
        do: Callable[[Effect], None],
    ) -> None:
        self.shape = shape
        self.message = message
        self.items: list[Item] = []  # in output_index order
        self._conversation = conversation
        self._emit = emit
        self._do = do
        self._previous: dict[str, str | None] = {}
        self._calls: dict[int, Item] = {}  # the stream's call index → its item
        self._open_calls: list[Item] = []

    @property
    def message_open(self) -> bool:
        return self.message in self.items

    @property
    def calls(self) -> list[Item]:
        return [item for item in self.items if item.type == "function_call"]

    def index(self, item: Item) -> int:
        return self.items.index(item)

    def _add(self, item: Item) -> int:
        self.items.append(item)
        return len(self.items) - 1

    def _announce(self, item: Item) -> None:
        """`conversation.item.added`, for a response that writes to the conversation."""
        if not self.shape.in_conversation:
            return
        self._previous[item.id] = self._conversation.add(item)
        shown = item.to_dict() | ({"arguments": ""} if item.type == "function_call" else {})
        self._emit(
            events.event(
                "conversation.item.added", previous_item_id=self._previous[item.id], item=shown
            )
        )

    # ---- the message ---------------------------------------------------------------------

    def open_message(self, then: Effect | None = None) -> None:
        """Announce the message item (at its first word); `then` runs right after."""
        if self.message_open:
            return
        index = self._add(self.message)
        rid, item = self.shape.id, self.message

        def effect() -> None:
            self._emit(rev.output_item_added(rid, index, item))
            self._announce(item)
            self._emit(rev.content_part_added(rid, index, item))
            if then is not None:
                then()

        self._do(effect)

    def text(self, delta: str) -> None:
        event = rev.text_delta(self.shape.id, self.index(self.message), self.message, delta)
        self._do(lambda: self._emit(event))

    def finish_message(self) -> None:
        if not self.message_open:
            return
        index, item = self.index(self.message), self.message
        in_conversation = self.shape.in_conversation

        def effect() -> None:
            previous = self._previous.get(item.id)
            for event in rev.message_finished(
                self.shape.id, index, item, previous, in_conversation
            ):
                self._emit(event)

        self._do(effect)

    # ---- function calls ------------------------------------------------------------------

    def tool_delta(self, delta: ToolCallDelta) -> None:
        item = self._calls.get(delta.index)
        if item is None:
            item = Item.function_call(
                new_id("item"), delta.call_id or new_id("call"), delta.name or "",
                status="in_progress",
            )  # fmt: skip
            self._calls[delta.index] = item
            self._open_calls.append(item)
            index = self._add(item)

            def opened(item: Item = item, index: int = index) -> None:
                self._emit(rev.output_item_added(self.shape.id, index, item))
                self._announce(item)

            self._do(opened)
        if delta.arguments:
            item.arguments += delta.arguments
            event = rev.arguments_delta(self.shape.id, self.index(item), item, delta.arguments)
            self._do(lambda: self._emit(event))

    def close_calls(self, status: ItemStatus = "completed") -> None:
        """Each call still open is done: its whole arguments, then the item."""
        in_conversation = self.shape.in_conversation
        for item in self._open_calls:
            item.status = status
            index = self.index(item)

            def effect(item: Item = item, index: int = index) -> None:
                previous = self._previous.get(item.id)
                for event in rev.call_finished(
                    self.shape.id, index, item, previous, in_conversation
                ):
                    self._emit(event)

            self._do(effect)
        self._open_calls.clear()

    # ---- the end -------------------------------------------------------------------------

    def done(self, status: str, reason: str | None) -> None:
        event = rev.response_done(self.shape, status, reason, list(self.items))
        self._do(lambda: self._emit(event))
