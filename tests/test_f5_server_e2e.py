"""A real Hark server with HARK_TTS=f5 (a tiny random-init F5 + Vocos on disk) and two
real WebRTC calls at once: both are answered out loud through the one F5 worker; one
switches to the caller's own voice and has it taken from its first spoken question."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

pytest.importorskip("torch", reason="the gpu extra (scripts/install.sh gpu)")
pytest.importorskip("f5_tts", reason="the gpu extra (scripts/install.sh gpu)")

from server.tools.call_client import CallClient, mint_client_secret
from tests.f5_models import write_random_f5
from tests.server_process import ServerProcess, running_server
from tests.speech import silence, speak

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def f5_server(tmp_path_factory: pytest.TempPathFactory):
    files = write_random_f5(tmp_path_factory.mktemp("f5-server"))
    env = {
        "HARK_TTS": "f5",
        "HARK_F5_CHECKPOINT": str(files.checkpoint),
        "HARK_VOCOS_PATH": str(files.vocos),
        "HARK_F5_MODEL_CONFIG": str(files.model_config),
        "HARK_F5_NFE_STEPS": "4",
        "HARK_F5_DEVICE": "cpu",
        "HARK_F5_MAX_BATCH": "2",
    }
    with running_server(env) as server:
        yield server


async def ask_typed(client: CallClient, text: str) -> dict:
    mark = len(client.events)
    client.ask(text)
    return (await client.wait_for("response.done", after=mark, timeout=120)).data


async def test_f5_server_answers_two_calls_at_once(f5_server: ServerProcess) -> None:
    clients = [
        CallClient(f5_server.url, await mint_client_secret(f5_server.url, f5_server.api_key))
        for _ in range(2)
    ]
    await asyncio.gather(*(c.connect() for c in clients))
    try:
        started = time.monotonic()
        done = await asyncio.gather(
            ask_typed(clients[0], "What is the capital of France?"),
            ask_typed(clients[1], "Tell me about the moon."),
        )
        for response, client in zip(done, clients, strict=True):
            assert response["response"]["status"] == "completed", response
            transcript = response["response"]["output"][0]["content"][0]["transcript"]
            assert transcript.strip()
            assert client.recorder.audible_ms_between(started, time.monotonic() + 1) >= 200
        log = f5_server.log()
        assert "F5-TTS ready on cpu" in log
    finally:
        await asyncio.gather(*(c.hangup() for c in clients))


async def test_f5_server_takes_the_callers_voice_when_asked(f5_server: ServerProcess) -> None:
    client = CallClient(f5_server.url, await mint_client_secret(f5_server.url, f5_server.api_key))
    await client.connect()
    try:
        mark = len(client.events)
        client.send(
            {"type": "session.update", "session": {"audio": {"output": {"voice": "caller"}}}}
        )
        updated = await client.wait_for("session.updated", after=mark, timeout=10)
        assert updated.data["session"]["audio"]["output"]["voice"] == "caller"
        # No voice store on this server: a profile is refused, the voice stays "caller".
        mark = len(client.events)
        client.send(
            {"type": "session.update", "session": {"audio": {"output": {"voice": "voice_abc"}}}}
        )
        error = await client.wait_for("error", after=mark, timeout=10)
        assert error.data["error"]["code"] == "voice_not_found"
        mark = len(client.events)
        question = np.concatenate(
            [
                silence(300, 48000),
                speak("What is the tallest mountain in the whole world?", 48000),
                silence(1500, 48000),
            ]
        )
        await client.say(question, 48000)
        done = await client.wait_for("response.done", after=mark, timeout=120)
        assert done.data["response"]["status"] == "completed"
        assert "the caller's voice taken" in f5_server.log()
    finally:
        await client.hangup()
