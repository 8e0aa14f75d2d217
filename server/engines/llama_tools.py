"""Tool calls from the embedded base model: whether to call, which tool, with what arguments.

Gemma-3-270M is a base model: asked in a prompt to pick a tool by name it picks almost
at random (9 of 26 right on tests/bench/tool_choice_set.json). It is much better at
judging how *likely the user's words are* after a task description. So `auto` is decided
the noisy-channel way: for each candidate task, "Answer a question or chat." and each
tool's description, the log-probability of the user's last utterance after
`Task: <description>\\nUser: ` is computed, and the likeliest task wins (24 of 26 on that
set; `python -m tests.bench.tool_choice` measures it). Every candidate scores the same
words, so the sums compare without normalising. `required` with several tools does the
same without the answer task; a named function needs no decision.

The arguments are then written greedily under a grammar made from the tool's JSON
Schema (`server.engines.json_grammar`), after a few examples of calls with other tools,
so they always parse and fit the schema.

Scoring runs on a small second llama.cpp context that shares the model's weights, so
the main context keeps the reply prompt it has evaluated and cached.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import llama_cpp
import numpy as np
from llama_cpp import _internals  # pinned llama-cpp-python: a context sharing weights

from server.engines.chat import ChatMessage, LLMRequest, ToolSpec

ANSWER_TASK = "Answer a question or chat."
MAX_TASK_CHARS = 200
MAX_UTTERANCE_CHARS = 300
SCORER_CTX = 256


class UtteranceScorer:
    """log P(utterance | task prefix) on a scratch context of the loaded model."""

    def __init__(self, llm: llama_cpp.Llama, threads: int) -> None:
        self._llm = llm
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = params.n_batch = params.n_ubatch = SCORER_CTX
        params.n_threads = params.n_threads_batch = threads
        self._ctx = _internals.LlamaContext(model=llm._model, params=params, verbose=False)
        self._batch = _internals.LlamaBatch(n_tokens=SCORER_CTX, embd=0, n_seq_max=1, verbose=False)
        self._vocab = llm.n_vocab()

    def logprob(self, prefix: str, text: str) -> float:
        head = self._llm.tokenize(prefix.encode(), add_bos=True)
        body = self._llm.tokenize(text.encode(), add_bos=False)
        tokens = (head + body)[: SCORER_CTX - 1]
        body = tokens[len(head) :]
        if not body:
            return 0.0
        self._ctx.kv_cache_clear()
        self._batch.set_batch(tokens, n_past=0, logits_all=False)
        for position in range(len(head) - 1, len(tokens)):
            self._batch.batch.logits[position] = True  # only where the words are predicted
        self._ctx.decode(self._batch)
        total = 0.0
        for offset, token in enumerate(body):
            row = np.ctypeslib.as_array(
                self._ctx.get_logits_ith(len(head) - 1 + offset), shape=(self._vocab,)
            )
            top = float(row.max())
            total += float(row[token]) - top - float(np.log(np.exp(row - top).sum()))
        return total


def task_text(tool: ToolSpec) -> str:
    """What a tool does, in words: its description, else its name spelled out."""
    text = " ".join((tool.description or tool.name.replace("_", " ")).split())
    return text[:MAX_TASK_CHARS]


def choose(
    scorer: UtteranceScorer, tools: Sequence[ToolSpec], utterance: str, *, may_answer: bool
) -> ToolSpec | None:
    """The tool whose task makes `utterance` likeliest; None when answering does."""
    candidates: list[tuple[ToolSpec | None, str]] = [(None, ANSWER_TASK)] if may_answer else []
    candidates += [(tool, task_text(tool)) for tool in tools]
    if len(candidates) == 1:
        return candidates[0][0]
    words = utterance[-MAX_UTTERANCE_CHARS:]
    scores = [scorer.logprob(f"Task: {task}\nUser: ", words) for _, task in candidates]
    return candidates[int(np.argmax(scores))][0]


def tool_to_call(request: LLMRequest, scorer: UtteranceScorer) -> ToolSpec | None:
    """The tool this reply calls under `request.tool_choice`, or None to answer in words."""
    tools = request.callable_tools
    if not tools:
        return None
    mode = request.tool_choice.mode
    if mode == "function":
        return tools[0]
    last = request.history[-1] if request.history else None
    if mode == "auto" and (last is None or last.role != "user"):
        return None  # after a tool's output (or nothing asked), answer from it
    utterance = last_user_text(request.history)
    if not utterance:
        return None if mode == "auto" else tools[0]
    return choose(scorer, tools, utterance, may_answer=mode == "auto")


def last_user_text(history: Sequence[ChatMessage]) -> str:
    for message in reversed(history):
        if message.role == "user" and message.content.strip():
            return " ".join(message.content.split())
    return ""


# Calls with other tools, so the model learns the format without copying the answer.
_CALL_EXAMPLES: tuple[tuple[str, str, str, str, str], ...] = (
    (
        "send_email",
        "Send an email to a contact.",
        "to (string), text (string)",
        "Email Anna that I am running late.",
        '{"to": "Anna", "text": "I am running late."}',
    ),
    (
        "get_stock_price",
        "Look up the price of a stock.",
        "symbol (string)",
        "How is Apple stock doing?",
        '{"symbol": "AAPL"}',
    ),
    (
        "book_table",
        "Reserve a table at a restaurant.",
        "people (integer), time (string)",
        "Get us a table for four at eight tonight.",
        '{"people": 4, "time": "20:00"}',
    ),
)


def arguments_prompt(tool: ToolSpec, history: Sequence[ChatMessage]) -> str:
    """A few-shot prompt ending where the model writes `tool`'s JSON arguments."""
    lines: list[str] = []
    for name, description, signature, question, arguments in _CALL_EXAMPLES:
        lines += [
            f"Tool: {name} - {description} Arguments: {signature}",
            f"Q: {question}",
            f"Call: {name} {arguments}",
            "",
        ]
    utterance = last_user_text(history)[-MAX_UTTERANCE_CHARS:] or "Go ahead."
    lines += [
        f"Tool: {tool.name} - {task_text(tool)} Arguments: {signature_text(tool.parameters)}",
        f"Q: {utterance}",
        f"Call: {tool.name}",
    ]
    return "\n".join(lines)


def signature_text(schema: dict[str, Any]) -> str:
    """`city (string), days (integer)`: the parameters in words (a JSON rendering of the
    types makes the model copy "string" as the value)."""
    properties = schema.get("properties")
    if not isinstance(properties, dict) or not properties:
        return "none"
    parts = []
    for name, spec in list(properties.items())[:20]:
        kind = spec.get("type", "value") if isinstance(spec, dict) else "value"
        if isinstance(spec, dict) and isinstance(spec.get("enum"), list):
            kind = " or ".join(json.dumps(v) for v in spec["enum"][:8])
        parts.append(f"{name} ({kind if isinstance(kind, str) else 'value'})")
    return ", ".join(parts)
