"""A reply with fixed words (a persona's greeting): a language model that says exactly
the text it was given, so the words go through the same response run as any reply
(events, clauses, TTS, barge-in, heard-only text)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from server.engines.chat import LLMRequest


class ScriptedReply:
    name = "scripted"

    def __init__(self, text: str) -> None:
        self.text = text

    async def load(self) -> None:
        return None

    async def stream(self, request: LLMRequest) -> AsyncIterator[str]:
        for word in self.text.split(" "):
            yield word + " "
