"""A persona: who the assistant is on a call, read from a TOML file.

Its `instructions` are a template (`$name`-style placeholders) filled in when a call
starts with what Hark remembers of the user: their profile, learning goals, progress
notes, and a summary of the conversation so far. A client that sends instructions of its
own gets exactly those instead. The greeting, when set, is spoken before the user says
anything (`greeting_resumed` on a call that continues a conversation).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from string import Template
from typing import Any

from server.protocol.session_config import SessionConfig

# What a template may use.
PLACEHOLDERS = ("name", "user", "profile", "goals", "notes", "summary", "language")
NOTHING_YET = "(none yet)"

DEFAULT_MEMORY_INSTRUCTIONS = (
    "You keep a tutor's records of one learner. Given the learner's current goals and "
    "progress notes and the transcript of today's conversation, write the updated goals "
    "and notes: keep what still holds, add what today showed (mistakes that recur, words "
    "learned, topics they enjoy), at most 80 words each. Answer with JSON only: "
    '{"goals": "...", "notes": "..."}'
)


@dataclass(frozen=True)
class UserMemory:
    """What Hark keeps about one user of one tenant across calls."""

    profile: dict[str, str] = field(default_factory=dict)
    goals: str = ""
    notes: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"profile": dict(self.profile), "goals": self.goals, "notes": self.notes}


@dataclass(frozen=True)
class Persona:
    id: str  # the file's name without .toml
    name: str
    instructions: str
    voice: str | None = None
    language: str = "en"
    greeting: str | None = None
    greeting_resumed: str | None = None
    description: str = ""
    # The session's turn_detection defaults, in the session.update shape.
    turn_detection: dict[str, Any] | None = None
    tools: tuple[dict[str, Any], ...] = ()
    # Update the user's goals and notes at the end of each call (needs an LLM that can).
    update_memory: bool = False
    memory_instructions: str = DEFAULT_MEMORY_INSTRUCTIONS

    def session(self, base: SessionConfig) -> SessionConfig:
        """`base` with this persona's defaults; the client's own fields go on top."""
        update: dict[str, Any] = {"instructions": self.instructions, "persona": self.id}
        if self.voice:
            update["audio"] = {"output": {"voice": self.voice}}
        if self.turn_detection is not None:
            update.setdefault("audio", {})["input"] = {"turn_detection": self.turn_detection}
        if self.tools:
            update["tools"] = [dict(tool) for tool in self.tools]
        return base.apply(update)

    def values(self, user: str | None, memory: UserMemory, summary: str | None) -> dict[str, str]:
        profile = "; ".join(f"{k}: {v}" for k, v in memory.profile.items()) or NOTHING_YET
        return {
            "name": self.name,
            "user": memory.profile.get("name") or user or "there",
            "profile": profile,
            "goals": memory.goals or NOTHING_YET,
            "notes": memory.notes or NOTHING_YET,
            "summary": summary or NOTHING_YET,
            "language": self.language,
        }

    def render_instructions(self, user: str | None, memory: UserMemory, summary: str | None) -> str:
        return Template(self.instructions).safe_substitute(self.values(user, memory, summary))

    def render_greeting(self, user: str | None, memory: UserMemory, *, resumed: bool) -> str | None:
        text = self.greeting_resumed if resumed else self.greeting
        if not text:
            return None
        return Template(text).safe_substitute(self.values(user, memory, None))
