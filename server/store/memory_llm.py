"""What an LLM does for Hark's memory between calls: summarize the older turns of a long
conversation, and update a learner's goals and notes after a lesson.

Only an instruction-following LLM can (an OpenAI-compatible server: vLLM, llama.cpp's
server); with the embedded base model Hark drops older turns instead and keeps notes as
they were given. Both run after a call, never on a call's path.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from typing import Any

from server.engines.base import ChatMessage, LanguageModel
from server.engines.chat import LLMRequest
from server.persona.persona import Persona, UserMemory
from server.store.user_memory import MAX_NOTES_CHARS

log = logging.getLogger("hark.memory")

MAX_TRANSCRIPT_CHARS = 24_000
SUMMARY_INSTRUCTIONS = (
    "Summarize the conversation below for the assistant who will continue it later: who "
    "the user is, what was discussed and decided, open questions. At most 120 words, "
    "plain prose, no preamble."
)
_JSON_OBJECT = re.compile(r"\{.*\}", re.DOTALL)


def transcript(messages: Sequence[ChatMessage], *, user: str = "User") -> str:
    names = {"user": user, "assistant": "Assistant", "system": "Note"}
    text = "\n".join(f"{names[m.role]}: {m.content}" for m in messages)
    return text[-MAX_TRANSCRIPT_CHARS:]


async def complete(llm: LanguageModel, instructions: str, prompt: str) -> str:
    parts = []
    request = LLMRequest(instructions, (ChatMessage("user", prompt),))
    async for delta in llm.stream(request):
        if isinstance(delta, str):  # text only: no tools are offered
            parts.append(delta)
    return "".join(parts).strip()


async def summarize(
    llm: LanguageModel, messages: Sequence[ChatMessage], previous: str | None
) -> str:
    prompt = transcript(messages)
    if previous:
        prompt = f"Summary of what came before: {previous}\n\n{prompt}"
    return await complete(llm, SUMMARY_INSTRUCTIONS, prompt)


def _parse_notes(answer: str) -> dict[str, Any] | None:
    match = _JSON_OBJECT.search(answer)
    if match is None:
        return None
    try:
        parsed = json.loads(match.group(0))
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


async def update_notes(
    llm: LanguageModel, persona: Persona, memory: UserMemory, messages: Sequence[ChatMessage]
) -> UserMemory | None:
    """The learner's goals and notes after this call, or None if the LLM's answer was not
    the JSON asked for (the notes then stay as they were)."""
    prompt = (
        f"Current goals: {memory.goals or '(none)'}\n"
        f"Current notes: {memory.notes or '(none)'}\n\n"
        f"Today's conversation:\n{transcript(messages, user='Learner')}"
    )
    answer = await complete(llm, persona.memory_instructions, prompt)
    parsed = _parse_notes(answer)
    if parsed is None:
        log.warning("memory update: the LLM did not answer with JSON; notes kept as they were")
        return None
    goals = parsed.get("goals", memory.goals)
    notes = parsed.get("notes", memory.notes)
    if not isinstance(goals, str) or not isinstance(notes, str):
        return None
    return UserMemory(
        profile=memory.profile,
        goals=goals.strip()[:MAX_NOTES_CHARS],
        notes=notes.strip()[:MAX_NOTES_CHARS],
    )
