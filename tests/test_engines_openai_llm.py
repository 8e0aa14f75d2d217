"""The OpenAI-compatible LLM client against a real server: llama.cpp's own, on Gemma-3-270M."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator

import pytest

from server.engines.base import ChatMessage, EngineUnavailable, LanguageModel
from server.engines.chat import LLMOutput, LLMRequest
from server.engines.openai_llm import LLMServerError, OpenAICompatibleLLM
from tests.llama_server import start_llama_server
from tests.server_process import free_port, stop_process

QUESTION = [ChatMessage("user", "What is the capital of France?")]


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """llama.cpp's OpenAI-compatible server, started for real, stopped at the end."""
    port = free_port()
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    proc = start_llama_server(port, log)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        stop_process(proc, timeout=10)


@pytest.fixture
async def llm(server_url: str) -> AsyncIterator[OpenAICompatibleLLM]:
    engine = OpenAICompatibleLLM(server_url, model="", max_tokens=40)
    await engine.load()
    yield engine
    await engine.close()


async def collect(stream: AsyncIterator[LLMOutput]) -> list[str]:
    """The text deltas (a stream may end with an `LLMFinish`)."""
    return [delta async for delta in stream if isinstance(delta, str)]


@pytest.mark.slow
async def test_streams_an_answer(llm: OpenAICompatibleLLM) -> None:
    assert isinstance(llm, LanguageModel)
    assert llm.model  # none configured: the first model the server lists
    deltas = await collect(llm.stream(LLMRequest("Answer in one short sentence.", tuple(QUESTION))))
    assert len(deltas) >= 2, deltas
    assert "".join(deltas).strip()


@pytest.mark.slow
async def test_closing_early_stops_the_server_generating(server_url: str) -> None:
    # Primed to count at length: the whole reply takes the server several seconds.
    history = [
        ChatMessage("user", "Count to ten."),
        ChatMessage("assistant", "1, 2, 3, 4, 5, 6, 7, 8, 9, 10."),
        ChatMessage("user", "Count to twenty."),
        ChatMessage("assistant", ", ".join(str(n) for n in range(1, 21)) + "."),
        ChatMessage("user", "Count to three hundred."),
    ]
    engine = OpenAICompatibleLLM(server_url, model="", max_tokens=300)
    await engine.load()
    try:
        started = time.perf_counter()
        assert len(await collect(engine.stream(LLMRequest("", tuple(history))))) > 20
        full = time.perf_counter() - started  # the whole reply, at this machine's load

        stream = engine.stream(LLMRequest("", tuple(history)))
        await anext(stream)
        await anext(stream)
        started = time.perf_counter()
        await stream.aclose()
        assert time.perf_counter() - started < 0.5
        # llama.cpp's server runs one request at a time: the next one starts before the
        # abandoned reply would have ended only if the dropped connection stopped it.
        follow_up = engine.stream(LLMRequest("", tuple(QUESTION)))
        await anext(follow_up)
        await follow_up.aclose()
        assert time.perf_counter() - started < full / 4
    finally:
        await engine.close()


@pytest.mark.slow
async def test_a_wrong_path_is_a_clear_error(server_url: str) -> None:
    base = server_url.removesuffix("/v1") + "/not-v1"
    with pytest.raises(EngineUnavailable, match=r"/not-v1/models answered 404"):
        await OpenAICompatibleLLM(base, model="x").load()
    engine = OpenAICompatibleLLM(base, model="x")
    try:
        with pytest.raises(LLMServerError, match=r"/not-v1/chat/completions answered 404: .+"):
            await collect(engine.stream(LLMRequest("", tuple(QUESTION))))
    finally:
        await engine.close()


async def test_an_unreachable_server_is_named() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    engine = OpenAICompatibleLLM(url, model="m")
    try:
        with pytest.raises(EngineUnavailable, match=f"{url}/models"):
            await engine.load()
    finally:
        await engine.close()


async def test_no_base_url_is_named() -> None:
    with pytest.raises(EngineUnavailable, match="HARK_LLM_BASE_URL"):
        await OpenAICompatibleLLM("", model="m").load()
