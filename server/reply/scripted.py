"""A reply with fixed words (a persona's greeting): a language model that says exactly
the text it was given, so the words go through the same response run as any reply
(events, clauses, TTS, barge-in, heard-only text)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from server.engines.base import ChatMessage


class ScriptedReply:
    name = "scripted"

    def __init__(self, text: str) -> None:
        self.text = text

    async def load(self) -> None:
        return None

    async def stream(self, instructions: str, history: list[ChatMessage]) -> AsyncIterator[str]:
        for word in self.text.split(" "):
            yield word + " "
