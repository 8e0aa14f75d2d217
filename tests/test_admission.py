"""The GPU memory guard: new calls refused (503 server_full, Retry-After) above the memory
limit or with engine queues too deep; off, and saying so, on a host without a GPU.

There is no GPU here: GPU memory readings come from a fake NVML named as such. The
refusal is checked over real HTTP on an in-process server whose engines are fakes that
load at once (named so), with the real VAD, call manager and HTTP face.
"""

from __future__ import annotations

import asyncio
import logging

import pytest
from aiohttp.test_utils import TestClient, TestServer

from server.app import NODE_KEY, create_app
from server.calls.admission import AdmissionGuard, NvmlMemory
from server.config import Config
from server.engines.base import Engines
from server.errors import Overloaded


class FakeNvml:
    """Reports the GPU memory in use that the test sets, per GPU."""

    def __init__(self, *fractions: float) -> None:
        self.fractions = list(fractions)

    def used_fractions(self) -> list[float]:
        return self.fractions


def guard(memory: FakeNvml | None, queues: dict[str, int] | None = None) -> AdmissionGuard:
    return AdmissionGuard(memory, memory_limit=0.9, queues=lambda: dict(queues or {}), max_queue=8)


def test_memory_above_the_limit_refuses_new_calls() -> None:
    guard(FakeNvml(0.5, 0.89)).check()  # under the limit on both GPUs
    with pytest.raises(Overloaded) as refused:
        guard(FakeNvml(0.5, 0.93)).check()
    assert refused.value.code == "server_full"
    assert "GPU 1 has 93% of its memory in use (limit 90%)" in refused.value.message
    assert refused.value.retry_after_s == 5


def test_deep_engine_queues_refuse_new_calls_with_or_without_a_gpu() -> None:
    guard(None, {"text-to-speech (f5)": 8}).check()
    with pytest.raises(Overloaded, match=r"text-to-speech \(f5\) engine has 9 jobs waiting"):
        guard(None, {"text-to-speech (f5)": 9}).check()
    unlimited = AdmissionGuard(None, memory_limit=0.9, queues=lambda: {"x": 10**6}, max_queue=0)
    unlimited.check()


def test_a_reading_that_fails_does_not_refuse_calls(caplog: pytest.LogCaptureFixture) -> None:
    class BrokenFakeNvml:
        def used_fractions(self) -> list[float]:
            raise RuntimeError("GPU is lost")

    with caplog.at_level(logging.WARNING, logger="hark.admission"):
        guard(BrokenFakeNvml()).check()  # type: ignore[arg-type]
    assert "GPU memory could not be read" in caplog.text


def test_without_a_gpu_the_guard_says_so_and_watches_only_queues(
    caplog: pytest.LogCaptureFixture,
) -> None:
    memory, why = NvmlMemory.open()
    assert memory is None
    assert "NVML" in why or "nvidia-ml-py" in why
    with caplog.at_level(logging.INFO, logger="hark.admission"):
        node_guard = AdmissionGuard.for_node(0.9, 32, lambda: {})
    assert node_guard.memory is None
    assert "GPU memory guard off" in caplog.text


class FakeInstantEngine:
    """Loads at once and does nothing: enough for the HTTP face to accept calls."""

    name = "fake-instant"
    sample_rate = 16000
    queue_depth = 0

    async def load(self) -> None:
        pass


async def test_a_full_gpu_answers_503_server_full_with_retry_after() -> None:
    engine = FakeInstantEngine()
    engines = Engines(stt=engine, llm=engine, tts=engine)  # type: ignore[arg-type]
    config = Config.from_env({"HARK_API_KEYS": "sk-1"})
    app = create_app(config, engines)
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        node = app[NODE_KEY]
        for _ in range(200):
            if node.runtime.readiness.ready:
                break
            await asyncio.sleep(0.05)
        assert node.runtime.readiness.ready
        fake = FakeNvml(0.95)
        node.runtime.admission = AdmissionGuard(
            fake, memory_limit=0.9, queues=engines.queue_depths, max_queue=8
        )
        offer = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
        headers = {"Authorization": "Bearer sk-1", "Content-Type": "application/sdp"}
        response = await client.post("/v1/realtime/calls", data=offer, headers=headers)
        assert response.status == 503
        assert response.headers["Retry-After"] == "5"
        body = await response.json()
        assert body["error"]["code"] == "server_full"
        assert body["error"]["type"] == "server_error"
        assert "95% of its memory" in body["error"]["message"]
        assert engines.queue_depths() == {
            "speech-to-text (fake-instant)": 0,
            "language model (fake-instant)": 0,
            "text-to-speech (fake-instant)": 0,
        }
        fake.fractions = [0.4]  # memory freed: the same offer is judged on its merits
        response = await client.post("/v1/realtime/calls", data=offer, headers=headers)
        assert response.status == 400  # a bare offer with no ICE: refused as an offer
    finally:
        await client.close()
