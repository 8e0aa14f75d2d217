"""A call's link to its durable conversation, through two small ports.

The session does not know SQL or files: it tells a `HistorySink` each item that is done
(the user's transcript, the reply as heard, a client's item, tool items) and a
`RecordingSink` the audio both ways with when each turn was spoken. Both are given with
the call (`server.store.memory.CallContext`) and both only queue work: nothing here
waits. Empty or aborted turns (no words, a reply cut before any of it was heard) are not
history.

At the start it replays the conversation's earlier items to the client
(`conversation.item.added` / `.done`) and puts them in the call's conversation, and it
keeps what the LLM is shown within the memory window.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from server.engines.base import ChatMessage
from server.engines.context_window import memory_window
from server.protocol import events
from server.protocol.conversation import Conversation, Item
from server.protocol.item_shapes import to_item, worth_keeping


class HistorySink(Protocol):
    def item_done(self, item: dict[str, Any]) -> None:
        """A finished item, as the client saw it; stored (or replaced) in order."""

    def item_deleted(self, item_id: str) -> None: ...

    def close(self, reason: str) -> None:
        """The call ended."""


class RecordingSink(Protocol):
    def caller_audio(self, frame: np.ndarray, audio_end_ms: int) -> None:
        """16 kHz mono int16 from the caller, ending at `audio_end_ms` of its stream."""

    def assistant_audio(self, frame: np.ndarray, sent_at: float) -> None:
        """48 kHz mono int16 sent to the caller at `sent_at` (time.monotonic())."""

    def user_turn(self, item_id: str, start_ms: int, end_ms: int) -> None:
        """When the caller spoke an item, on the caller's stream clock."""

    def assistant_turn(self, item_id: str, *, playing: bool) -> None:
        """A reply's audio started (`playing`) or stopped, now."""

    def item_done(self, item: dict[str, Any]) -> None:
        """A finished item (its words go beside the recording's timings)."""

    def close(self) -> None: ...


class CallHistory:
    def __init__(
        self,
        conversation: Conversation,
        send: Callable[[dict[str, Any]], None],
        *,
        conversation_id: str | None = None,
        earlier: list[dict[str, Any]] | None = None,
        summary: str | None = None,
        memory_tokens: int = 0,
        sink: HistorySink | None = None,
        recorder: RecordingSink | None = None,
    ) -> None:
        self.conversation = conversation
        self.conversation_id = conversation_id
        self.summary = summary
        self.memory_tokens = memory_tokens
        self.sink = sink
        self.recorder = recorder
        self._send = send
        self._earlier = list(earlier or [])
        self._replayed = False

    def replay(self) -> int:
        """Announce the conversation's earlier items (once, after session.created)."""
        if self._replayed:
            return 0
        self._replayed = True
        previous = self.conversation.last_id
        for raw in self._earlier:
            item = to_item(raw)
            shape = raw if item is None else item.to_dict()
            if item is not None:
                self.conversation.add(item)
            self._send(
                events.event("conversation.item.added", previous_item_id=previous, item=shape)
            )
            self._send(
                events.event("conversation.item.done", previous_item_id=previous, item=shape)
            )
            previous = str(raw.get("id"))
        return len(self._earlier)

    def done(self, item: Item) -> None:
        shape = item.to_dict()
        if not worth_keeping(shape):
            return
        if self.sink is not None:
            self.sink.item_done(shape)
        if self.recorder is not None:
            self.recorder.item_done(shape)

    def changed(self, item: Item) -> None:
        """An item already stored was cut back (truncated): keep what is left, or
        nothing if no words are left."""
        if worth_keeping(item.to_dict()):
            self.done(item)
        elif self.sink is not None:
            self.sink.item_deleted(item.id)

    def deleted(self, item_id: str) -> None:
        if self.sink is not None:
            self.sink.item_deleted(item_id)

    # ---- the recording, if the call is recorded -----------------------------------------

    def caller_audio(self, frame: np.ndarray, audio_end_ms: int) -> None:
        if self.recorder is not None:
            self.recorder.caller_audio(frame, audio_end_ms)

    def assistant_audio(self, frame: np.ndarray, sent_at: float) -> None:
        if self.recorder is not None:
            self.recorder.assistant_audio(frame, sent_at)

    def user_spoke(self, item_id: str, start_ms: int, end_ms: int) -> None:
        if self.recorder is not None:
            self.recorder.user_turn(item_id, start_ms, end_ms)

    def assistant_playing(self, item_id: str, *, playing: bool) -> None:
        if self.recorder is not None:
            self.recorder.assistant_turn(item_id, playing=playing)

    def context(self, messages: list[ChatMessage]) -> list[ChatMessage]:
        """What the LLM is shown: the newest turns within the budget, after the summary."""
        return memory_window(messages, self.memory_tokens, self.summary)

    def close(self, reason: str) -> None:
        if self.sink is not None:
            self.sink.close(reason)
        if self.recorder is not None:
            self.recorder.close()
