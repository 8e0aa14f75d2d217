"""The memory window: which earlier turns an LLM is shown, within a token budget.

A resumed conversation can be long; the LLM sees its newest turns that fit
`HARK_MEMORY_TOKENS`, and, when an LLM that can summarize is configured, a summary of
the older ones first (as a system message). Tokens are estimated (about four characters
each in English), not counted with a tokenizer: the window has to work for any engine,
and a budget that is 10 % off is still a budget.
"""

from __future__ import annotations

from collections.abc import Sequence

from server.engines.base import ChatMessage

CHARS_PER_TOKEN = 4
SUMMARY_PREFIX = "Earlier in this conversation: "


def estimate_tokens(text: str) -> int:
    return len(text) // CHARS_PER_TOKEN + 1


def fitting(messages: Sequence[ChatMessage], budget: int) -> int:
    """How many of the newest messages fit `budget` tokens (always at least the last
    one: the turn being answered). A budget of 0 means no limit."""
    if budget <= 0:
        return len(messages)
    used = 0
    for count, message in enumerate(reversed(messages)):
        used += estimate_tokens(message.content)
        if used > budget and count > 0:
            return count
    return len(messages)


def memory_window(
    messages: Sequence[ChatMessage], budget: int, summary: str | None = None
) -> list[ChatMessage]:
    """The newest messages that fit, after the summary of what came before them."""
    keep = fitting(messages, budget)
    recent = list(messages[len(messages) - keep :])
    if summary:
        return [ChatMessage("system", SUMMARY_PREFIX + summary), *recent]
    return recent
