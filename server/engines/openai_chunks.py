"""Reading an OpenAI-compatible `/chat/completions` stream: text, tool calls, finish reason.

Servers stream tool calls differently while keeping to the same schema: vLLM sends a
call's `id` and `name` once, in its first delta, then bare `arguments` fragments;
llama.cpp's Python server repeats `id` and `name` on every delta; some send the `id`
before the `name`, or no `id` at all. `ChunkReader` turns any of them into Hark's
`ToolCallDelta`s: one opening delta per call with its id and name, then the argument
fragments in order, so a name repeated on every chunk is never doubled.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from typing import Any

from server.engines.chat import LLMFinish, LLMOutput, ToolCallDelta

_FINISH = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
}


class ChunkError(ValueError):
    """A chunk that is not a chat completion chunk, or an error object in the stream."""


@dataclass
class _Call:
    """A tool call being streamed: opened once its name is known."""

    call_id: str | None = None
    name: str | None = None
    opened: bool = False
    pending: list[str] = field(default_factory=list)  # arguments seen before the name


class ChunkReader:
    """Feed it each `data:` payload of one stream; it returns Hark's outputs for it."""

    def __init__(self) -> None:
        self._calls: dict[int, _Call] = {}

    def feed(self, data: str) -> list[LLMOutput]:
        try:
            chunk = json.loads(data)
        except json.JSONDecodeError as exc:
            raise ChunkError(f"streamed invalid JSON: {_excerpt(data)}") from exc
        if not isinstance(chunk, dict):
            raise ChunkError(f"streamed an unexpected event: {_excerpt(data)}")
        if "error" in chunk:
            raise ChunkError(f"failed mid-stream: {_excerpt(json.dumps(chunk['error']))}")
        choices = chunk.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            return []  # e.g. the usage chunk at the end (stream_options.include_usage)
        choice = choices[0]
        delta = choice.get("delta") if isinstance(choice.get("delta"), dict) else {}
        out: list[LLMOutput] = []
        content = delta.get("content")
        if isinstance(content, str) and content:
            out.append(content)
        calls = delta.get("tool_calls")
        if isinstance(calls, list):
            for position, raw in enumerate(calls):
                if isinstance(raw, dict):
                    out.extend(self._tool_call(raw, position))
        reason = choice.get("finish_reason")
        if isinstance(reason, str) and reason:
            out.extend(self._close())
            out.append(LLMFinish(_FINISH.get(reason, "stop")))  # type: ignore[arg-type]
        return out

    def finish(self) -> list[LLMOutput]:
        """At the end of the stream: calls whose name never came are opened nameless."""
        return self._close()

    def _tool_call(self, raw: dict[str, Any], position: int) -> list[LLMOutput]:
        index = raw.get("index")
        if not isinstance(index, int) or isinstance(index, bool):
            index = position
        call = self._calls.setdefault(index, _Call())
        function = raw.get("function") if isinstance(raw.get("function"), dict) else {}
        if call.call_id is None and isinstance(raw.get("id"), str) and raw["id"]:
            call.call_id = raw["id"]
        if call.name is None and isinstance(function.get("name"), str) and function["name"]:
            call.name = function["name"]
        arguments = function.get("arguments")
        fragment = arguments if isinstance(arguments, str) else ""
        if not call.opened:
            if fragment:
                call.pending.append(fragment)
            if call.name is None:
                return []  # wait for the name: an opening delta must carry it
            return [self._open(index, call)]
        return [ToolCallDelta(index, fragment)] if fragment else []

    def _open(self, index: int, call: _Call) -> ToolCallDelta:
        call.opened = True
        call.call_id = call.call_id or f"call_{secrets.token_hex(12)}"
        arguments = "".join(call.pending)
        call.pending.clear()
        return ToolCallDelta(index, arguments, call_id=call.call_id, name=call.name or "")

    def _close(self) -> list[LLMOutput]:
        return [
            self._open(index, call)
            for index, call in sorted(self._calls.items())
            if not call.opened and (call.name or call.pending)
        ]


def _excerpt(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"
