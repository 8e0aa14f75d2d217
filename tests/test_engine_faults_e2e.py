"""Engine faults against real servers: a Hark server on a real llama.cpp OpenAI-compatible
server that the test kills, restarts and freezes (SIGSTOP); 5xx answers and a stream cut
mid-reply injected by a proxy in front of the real server; an STT and a TTS that raise
inside a live call. Every time the call survives, the client gets an `error` event and
hears an apology, operators see the fault counted, and the next turn works once the
engine is back."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import numpy as np
import pytest

from server.engines.base import ChatMessage
from server.engines.chat import LLMRequest
from server.engines.faults import APOLOGY, EngineFault
from server.engines.openai_llm import OpenAICompatibleLLM
from server.tools.call_client import CallClient, mint_client_secret
from tests.llama_server import start_llama_server
from tests.llm_proxy import FaultInjectingProxy
from tests.server_process import ServerProcess, free_port, running_server, stop_process
from tests.speech import silence, speak

pytestmark = pytest.mark.slow

QUESTION = LLMRequest("", (ChatMessage("user", "What is the capital of France?"),))


@dataclass
class LlamaServer:
    """The real llama.cpp server, which the tests kill, restart, freeze and thaw."""

    port: int
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> None:
        self.proc = start_llama_server(self.port, self.log)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def freeze(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.thaw()
            stop_process(self.proc, timeout=10)


@pytest.fixture(scope="module")
def llama(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    server = LlamaServer(free_port(), tmp_path_factory.mktemp("llama") / "server.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def hark_on_llama(llama: LlamaServer) -> Iterator[ServerProcess]:
    env = {
        "HARK_LLM_BASE_URL": llama.url,
        "HARK_LLM_MAX_TOKENS": "30",
        "HARK_LLM_FIRST_TOKEN_TIMEOUT": "4",
    }
    with running_server(env) as server:
        yield server


async def ask(client: CallClient, text: str) -> tuple[dict, list[dict]]:
    """Type a question; its response.done and the events that came with it."""
    mark = len(client.events)
    client.ask(text)
    done = await client.wait_for("response.done", after=mark, timeout=90)
    return done.data["response"], [e.data for e in client.events[mark:]]


def assert_apologized(response: dict, events: list[dict], code: str) -> None:
    errors = [e["error"] for e in events if e["type"] == "error"]
    assert [e["code"] for e in errors] == [code], errors
    assert response["status"] == "failed"
    assert response["status_details"]["error"]["code"] == code
    assert response["output"][0]["content"][0]["transcript"] == APOLOGY
    assert any(e["type"] == "output_audio_buffer.stopped" for e in events)  # it was played


async def metrics(server: ServerProcess) -> str:
    async with aiohttp.ClientSession() as http:
        async with http.get(
            f"{server.url}/metrics", headers={"Authorization": f"Bearer {server.admin_key}"}
        ) as response:
            assert response.status == 200
            return await response.text()


async def test_llm_server_killed_restarted_and_frozen(
    llama: LlamaServer, hark_on_llama: ServerProcess
) -> None:
    hark = hark_on_llama
    client = CallClient(hark.url, await mint_client_secret(hark.url, hark.api_key))
    await client.connect()
    try:
        response, _ = await ask(client, "What is the capital of France?")
        assert response["status"] == "completed"

        llama.kill()  # down: the connection is refused
        heard_from = time.monotonic()
        response, events = await ask(client, "And what is the capital of Italy?")
        assert_apologized(response, events, "llm_unavailable")
        assert client.recorder.audible_ms_between(heard_from, time.monotonic() + 1) >= 500

        llama.start()  # back on the same port: the next turn works
        response, events = await ask(client, "What is the capital of Spain?")
        assert response["status"] == "completed", events
        assert response["output"][0]["content"][0]["transcript"] != APOLOGY

        llama.freeze()  # up but silent: no first token within HARK_LLM_FIRST_TOKEN_TIMEOUT
        started = time.monotonic()
        try:
            response, events = await ask(client, "What is the capital of Germany?")
        finally:
            llama.thaw()
        assert_apologized(response, events, "llm_timeout")
        assert 3.5 < time.monotonic() - started < 30

        response, events = await ask(client, "What is the capital of Portugal?")
        assert response["status"] == "completed", events

        text = await metrics(hark)
        assert 'hark_engine_faults_total{code="llm_unavailable",stage="llm"} 1.0' in text
        assert 'hark_engine_faults_total{code="llm_timeout",stage="llm"} 1.0' in text
        assert 'hark_errors_total{type="llm_timeout"} 1.0' in text
        async with aiohttp.ClientSession() as http:
            async with http.get(
                f"{hark.url}/v1/operator/calls/{client.call_id}",
                headers={"Authorization": f"Bearer {hark.admin_key}"},
            ) as reply:
                call = await reply.json()
        assert call["engine_faults"] == 2, call
        assert call["error_counts"]["llm_timeout"] == 1
    finally:
        await client.hangup()


@pytest.fixture
async def proxy(llama: LlamaServer) -> AsyncIterator[FaultInjectingProxy]:
    injecting = FaultInjectingProxy(llama.url)
    await injecting.start()
    yield injecting
    await injecting.close()


async def test_5xx_and_a_stream_cut_mid_reply_are_named_faults(
    llama: LlamaServer, proxy: FaultInjectingProxy
) -> None:
    engine = OpenAICompatibleLLM(proxy.url, model="", max_tokens=40, first_token_timeout_s=10)
    await engine.load()
    try:
        proxy.answer_status = 503
        with pytest.raises(EngineFault) as fault:
            [d async for d in engine.stream(QUESTION)]
        assert fault.value.code == "llm_error" and "answered 503" in fault.value.message

        proxy.answer_status = None
        proxy.cut_after_lines = 4
        deltas: list[str] = []
        with pytest.raises(EngineFault) as fault:
            async for delta in engine.stream(QUESTION):
                deltas.append(delta)
        assert fault.value.code == "llm_stream_cut"
        assert 1 <= len(deltas) <= 4  # what came before the cut was delivered

        proxy.cut_after_lines = None
        deltas = [d async for d in engine.stream(QUESTION)]
        answer = "".join(d for d in deltas if isinstance(d, str))
        assert answer.strip()  # the server was fine all along: the next reply works
    finally:
        await engine.close()


class BreakableSTT:
    """The real Whisper engine with a switch that makes it raise (fault injection)."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.name = inner.name  # type: ignore[attr-defined]
        self.broken = False

    async def load(self) -> None:
        await self.inner.load()  # type: ignore[attr-defined]

    async def transcribe(self, audio: np.ndarray) -> str:
        return (await self.transcribe_detailed(audio)).text

    async def transcribe_detailed(self, audio: np.ndarray, language: str | None = None):
        if self.broken:
            raise RuntimeError("CUDA out of memory (injected)")
        return await self.inner.transcribe_detailed(audio, language)  # type: ignore[attr-defined]


class BreakableTTS:
    """The real Piper engine with a switch that makes it raise (fault injection)."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.name = inner.name  # type: ignore[attr-defined]
        self.broken = False

    @property
    def sample_rate(self) -> int:
        return self.inner.sample_rate  # type: ignore[attr-defined]

    async def load(self) -> None:
        await self.inner.load()  # type: ignore[attr-defined]

    async def synthesize(self, text: str, voice: str | None = None, speed: float = 1.0):
        if self.broken:
            raise RuntimeError("the TTS process died (injected)")
        async for chunk in self.inner.synthesize(text, voice, speed):  # type: ignore[attr-defined]
            yield chunk


async def test_stt_and_tts_raising_in_a_live_call(llama: LlamaServer) -> None:
    from aiohttp import web

    from server.app import NODE_KEY, create_app
    from server.config import Config
    from server.engines.factory import build_engines

    config = Config.from_env(
        {"HARK_API_KEYS": "sk-faults", "HARK_LLM_BASE_URL": llama.url, "HARK_LLM_MAX_TOKENS": "30"}
    )
    engines = build_engines(config)
    stt, tts = BreakableSTT(engines.stt), BreakableTTS(engines.tts)
    engines.stt, engines.tts = stt, tts  # type: ignore[assignment]
    app = create_app(config, engines)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    url = f"http://127.0.0.1:{port}"
    try:
        async with asyncio.timeout(120):
            while not app[NODE_KEY].runtime.readiness.ready:
                assert app[NODE_KEY].runtime.readiness.error is None
                await asyncio.sleep(0.2)
        assert engines.apology is not None  # Piper said the apology at start-up
        client = CallClient(url, await mint_client_secret(url, "sk-faults"))
        await client.connect()
        try:
            question = np.concatenate(
                [silence(300, 48000), speak("What is the capital of France?", 48000),
                 silence(1500, 48000)]
            )  # fmt: skip
            stt.broken = True
            mark = len(client.events)
            await client.say(question, 48000)
            error = await client.wait_for("error", after=mark, timeout=60)
            assert error.data["error"]["code"] == "stt_failed"
            done = await client.wait_for("response.done", after=mark, timeout=60)
            spoken = done.data["response"]["output"][0]["content"][0]["transcript"]
            assert spoken == APOLOGY  # said through the TTS, which still works

            stt.broken, tts.broken = False, True
            response, events = await ask(client, "What is the capital of Italy?")
            assert_apologized(response, events, "tts_failed")  # the stored clip

            tts.broken = False
            response, events = await ask(client, "What is the capital of Spain?")
            assert response["status"] == "completed", events
            monitor = app[NODE_KEY].monitor
            assert monitor.get(client.call_id).engine_faults == 2
        finally:
            await client.hangup()
    finally:
        await runner.cleanup()
