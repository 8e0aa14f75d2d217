"""The contract between a reply and a language model: what is asked, what comes back.

A reply asks with an `LLMRequest`: the instructions, the history (user and assistant
messages, the assistant's tool calls and the tools' outputs), the function tools the
model may call and how it must choose (`ToolChoice`), and a token cap. The model's
stream yields text as `str` deltas, a tool call as `ToolCallDelta`s (the first of each
call names it, the rest carry fragments of its JSON arguments), and may end with an
`LLMFinish` saying why it stopped. Everything here is frozen and hashable, so a request
can be the key a reply begun at a pause is matched by.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

Role = Literal["system", "user", "assistant", "tool"]


@dataclass(frozen=True)
class ToolCall:
    """A call the assistant made: `arguments` is the JSON text it wrote."""

    call_id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class ChatMessage:
    """One message of the history. An assistant message may carry `tool_calls`; a `tool`
    message is a tool's output, for the call `tool_call_id` (of the function `name`)."""

    role: Role
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None


@dataclass(frozen=True)
class ToolSpec:
    """A function the model may call. `schema` is its parameters' JSON Schema as canonical
    JSON text (kept as text so the spec stays hashable); `parameters` parses it."""

    name: str
    description: str = ""
    schema: str = '{"type": "object", "properties": {}}'

    @classmethod
    def of(cls, name: str, description: str, parameters: dict[str, Any]) -> ToolSpec:
        return cls(name, description, json.dumps(parameters, sort_keys=True))

    @cached_property
    def parameters(self) -> dict[str, Any]:
        value = json.loads(self.schema)
        return value if isinstance(value, dict) else {}


ToolChoiceMode = Literal["auto", "none", "required", "function"]


@dataclass(frozen=True)
class ToolChoice:
    """`auto` (the model decides), `none` (never call), `required` (call one of the
    tools), or `function` (call the tool `name`)."""

    mode: ToolChoiceMode = "auto"
    name: str | None = None

    @classmethod
    def function(cls, name: str) -> ToolChoice:
        return cls("function", name)


@dataclass(frozen=True)
class LLMRequest:
    instructions: str
    history: tuple[ChatMessage, ...]
    tools: tuple[ToolSpec, ...] = ()
    tool_choice: ToolChoice = field(default_factory=ToolChoice)
    # None: the engine's own cap (HARK_LLM_MAX_TOKENS); else at most this many tokens.
    max_tokens: int | None = None

    @property
    def callable_tools(self) -> tuple[ToolSpec, ...]:
        """The tools the model may call under `tool_choice` (none for `none`)."""
        choice = self.tool_choice
        if choice.mode == "none":
            return ()
        if choice.mode == "function":
            return tuple(tool for tool in self.tools if tool.name == choice.name)
        return self.tools

    def tool(self, name: str) -> ToolSpec | None:
        return next((tool for tool in self.tools if tool.name == name), None)


@dataclass(frozen=True)
class ToolCallDelta:
    """A piece of a tool call in a model's stream. Calls are numbered by `index` within
    the reply; the first delta of a call carries its `call_id` and `name`, later ones
    only `arguments` fragments (concatenated, they are the call's JSON arguments)."""

    index: int
    arguments: str = ""
    call_id: str | None = None
    name: str | None = None


FinishReason = Literal["stop", "length", "tool_calls"]


@dataclass(frozen=True)
class LLMFinish:
    """The last item of a stream, when the engine knows why it stopped: `length` means
    the token cap cut the reply short."""

    reason: FinishReason


LLMOutput = str | ToolCallDelta | LLMFinish
