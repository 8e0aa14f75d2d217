"""The few-shot "Q:/A:" transcript prompt for a small base model.

Gemma-3-270M is a base model without a chat template: its own chat format makes it ramble,
while a plain transcript of short questions and answers, cut at the next newline, gives
clean one-sentence replies. The persona comes first as plain text, then a few examples
that set the tone and length, then the recent conversation, then "A:" for the model to
complete. Everything before the history stays the same from turn to turn, so llama.cpp
reuses its cached evaluation and the first token comes sooner.

A tool's output is a line of its own after the question it served, `(get_weather
returned {...})`, and the examples then include two such answers, so the model speaks
from the output. The call itself is not rendered: its output line names it.
"""

from __future__ import annotations

from collections.abc import Sequence

from server.engines.base import ChatMessage

# Whole-sentence answers here make the model answer in whole sentences, not "Paris."
FEW_SHOT: tuple[tuple[str, str], ...] = (
    ("Hi there!", "Hello! How can I help you today?"),
    (
        "What is the tallest mountain in the world?",
        "Mount Everest is the tallest mountain in the world.",
    ),
    ("How many days are in a week?", "There are seven days in a week."),
    ("Who wrote Romeo and Juliet?", "William Shakespeare wrote Romeo and Juliet."),
    ("What do bees make?", "Bees make honey from the nectar of flowers."),
    ("Can you recommend a good hobby?", "Gardening is relaxing, and you get fresh vegetables!"),
)

# Shown only when the conversation holds a tool's output: answers that use one.
TOOL_FEW_SHOT: tuple[tuple[str, str, str], ...] = (
    (
        "How is Apple stock doing?",
        'get_stock_price returned {"symbol": "AAPL", "price": 231.5}',
        "Apple stock is at 231 dollars and 50 cents.",
    ),
    (
        "Email Anna that I am late.",
        'send_email returned {"status": "sent"}',
        "Done, I sent Anna your email.",
    ),
)

# The model continues the transcript; these mean it started a new turn of its own.
STOP = ("\n", "Q:", "User:")

# Said when the model produced nothing, so a spoken turn never ends in silence.
EMPTY_REPLY = "Sorry, I didn't catch that."

# About 600-2400 tokens of conversation, depending on the text.
MAX_HISTORY_CHARS = 2400
# A tool's output is read from its head (a JSON object's first fields).
MAX_TOOL_OUTPUT_CHARS = 600

# Answering with no new question pending (a greeting on `response.create`): ask for one.
_OPENING = "Hello?"


def build_prompt(
    instructions: str,
    history: Sequence[ChatMessage],
    *,
    max_history_chars: int = MAX_HISTORY_CHARS,
    max_instruction_chars: int = 1200,
    max_turns: int = 12,
) -> str:
    """Render the prompt; the limits keep it well inside a 2048-token context."""
    system = [_one_line(m.content) for m in history if m.role == "system"]
    persona = " ".join(p for p in (_one_line(instructions), *system) if p)
    lines = [_clip(persona, max_instruction_chars)] if persona else []
    if lines:
        lines.append("")
    lines += [line for q, a in FEW_SHOT for line in (f"Q: {q}", f"A: {a}")]
    turns = _merge_turns(history)
    if any(turn.role == "tool" for turn in turns):
        lines += [line for q, r, a in TOOL_FEW_SHOT for line in (f"Q: {q}", f"({r})", f"A: {a}")]
    if not turns or turns[-1].role not in ("user", "tool"):
        turns.append(ChatMessage("user", _OPENING))
    lines += _render_recent(turns[-max_turns:], max_history_chars)
    lines.append("A:")
    return "\n".join(lines)


def _render_recent(turns: list[ChatMessage], budget: int) -> list[str]:
    """The newest turns that fit `budget` characters; the question being answered always."""
    rendered: list[str] = []
    for i, turn in enumerate(reversed(turns)):
        prefix = _PREFIX.get(turn.role, "A: ")
        if turn.role == "tool":
            prefix = f"({turn.name or 'a tool'} returned "
        if i == 0:
            # The last question: keep its end, where a long message usually asks.
            text = _clip_tail(turn.content, max(budget - len(prefix) - 1, 1))
        elif len(prefix) + len(turn.content) + 1 > budget:
            break
        else:
            text = turn.content
        line = prefix + text + (")" if turn.role == "tool" else "")
        budget -= len(line) + 1
        rendered.append(line)
    # Start on a question, so every answer in the transcript follows its question.
    while len(rendered) > 1 and not rendered[-1].startswith("Q: "):
        rendered.pop()
    return rendered[::-1]


_PREFIX = {"user": "Q: ", "assistant": "A: "}


def _merge_turns(history: Sequence[ChatMessage]) -> list[ChatMessage]:
    """User and assistant turns and tools' outputs, each one line, consecutive
    same-speaker turns joined (never two outputs)."""
    turns: list[ChatMessage] = []
    for message in history:
        text = _one_line(message.content)
        if message.role == "system" or not text:
            continue
        if message.role == "tool":
            turns.append(ChatMessage("tool", _clip(text, MAX_TOOL_OUTPUT_CHARS), name=message.name))
        elif turns and turns[-1].role == message.role:
            turns[-1] = ChatMessage(message.role, f"{turns[-1].content} {text}")
        else:
            turns.append(ChatMessage(message.role, text))
    return turns


def _one_line(text: str) -> str:
    """Newlines end a turn in the transcript, so a message must not contain any."""
    return " ".join(text.split())


def _clip(text: str, limit: int) -> str:
    """The head of `text` in `limit` characters, cut between words."""
    return text if len(text) <= limit else text[: limit + 1].rsplit(" ", 1)[0][:limit]


def _clip_tail(text: str, limit: int) -> str:
    """The end of `text` in `limit` characters, cut between words."""
    return text if len(text) <= limit else text[-limit - 1 :].split(" ", 1)[-1][-limit:]
