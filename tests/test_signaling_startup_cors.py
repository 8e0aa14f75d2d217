"""The HTTP layer in-process: 503 while models load, CORS, the demo switch, config errors.

These need no models: the engines here are fakes that never finish loading (named so),
which is exactly the state of a server that is still starting.
"""

from __future__ import annotations

import asyncio

import pytest
from aiohttp.test_utils import TestClient, TestServer

from server.app import create_app
from server.config import Config, ConfigError
from server.engines.base import Engines


class FakeNeverLoadingEngine:
    """Stands in for an engine whose model is still loading."""

    name = "fake-loading"
    sample_rate = 16000

    async def load(self) -> None:
        await asyncio.Event().wait()


def fake_engines() -> Engines:
    engine = FakeNeverLoadingEngine()
    return Engines(stt=engine, llm=engine, tts=engine)  # type: ignore[arg-type]


async def client_for(env: dict[str, str]) -> TestClient:
    config = Config.from_env({"HARK_API_KEYS": "sk-1", **env})
    client = TestClient(TestServer(create_app(config, fake_engines())))
    await client.start_server()
    return client


async def test_starting_server_answers_503_and_refuses_calls():
    client = await client_for({})
    try:
        resp = await client.get("/healthz")
        assert resp.status == 503
        assert (await resp.json())["status"] == "starting"
        resp = await client.post(
            "/v1/realtime/calls",
            data="v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n",
            headers={"Authorization": "Bearer sk-1", "Content-Type": "application/sdp"},
        )
        assert resp.status == 503
        assert resp.headers["Retry-After"] == "5"
        assert (await resp.json())["error"]["code"] == "server_starting"
        # Minting needs no models.
        resp = await client.post(
            "/v1/realtime/client_secrets", json={}, headers={"Authorization": "Bearer sk-1"}
        )
        assert resp.status == 200
    finally:
        await client.close()


async def test_cors_preflight_and_exposed_location():
    client = await client_for({"HARK_CORS_ORIGINS": "https://app.example"})
    try:
        resp = await client.options(
            "/v1/realtime/calls",
            headers={
                "Origin": "https://app.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )
        assert resp.status == 204
        assert resp.headers["Access-Control-Allow-Origin"] == "https://app.example"
        allowed = resp.headers["Access-Control-Allow-Headers"].lower()
        for header in ("authorization", "content-type", "x-openai-agents-sdk"):
            assert header in allowed
        assert "POST" in resp.headers["Access-Control-Allow-Methods"]

        resp = await client.post(
            "/v1/realtime/client_secrets",
            json={},
            headers={"Authorization": "Bearer sk-1", "Origin": "https://app.example"},
        )
        assert resp.headers["Access-Control-Allow-Origin"] == "https://app.example"
        assert "Location" in resp.headers["Access-Control-Expose-Headers"]

        # Errors carry CORS headers too, or the page could not read them.
        resp = await client.post(
            "/v1/realtime/client_secrets", json={}, headers={"Origin": "https://app.example"}
        )
        assert resp.status == 401
        assert resp.headers["Access-Control-Allow-Origin"] == "https://app.example"

        resp = await client.options(
            "/v1/realtime/calls",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        )
        assert resp.status == 403
        assert "Access-Control-Allow-Origin" not in resp.headers
    finally:
        await client.close()


async def test_demo_is_off_when_not_on_loopback_unless_enabled():
    client = await client_for({"HARK_HOST": "0.0.0.0"})
    try:
        resp = await client.post("/hark/demo/client_secret", json={})
        assert resp.status == 404
        assert (await resp.json())["error"]["code"] == "demo_disabled"
    finally:
        await client.close()
    assert Config.from_env({"HARK_HOST": "0.0.0.0", "HARK_DEMO": "1"}).demo_page
    assert Config.from_env({"HARK_HOST": "127.0.0.1"}).demo_page
    assert not Config.from_env({"HARK_HOST": "127.0.0.1", "HARK_DEMO": "0"}).demo_page


def test_config_defaults_and_errors():
    config = Config.from_env({})
    assert (config.host, config.port) == ("127.0.0.1", 8080)
    assert config.api_key_generated and config.api_keys[0].startswith("sk-hark-")
    assert Config.from_env({"HARK_API_KEYS": "a, b"}).api_keys == ("a", "b")
    assert Config.from_env({"HARK_LLM_BASE_URL": "http://x/v1"}).llm == "openai"
    with pytest.raises(ConfigError, match="HARK_PORT"):
        Config.from_env({"HARK_PORT": "eighty"})
    with pytest.raises(ConfigError, match="HARK_TTS"):
        Config.from_env({"HARK_TTS": "nope"})
    with pytest.raises(ConfigError, match="HARK_LLM_BASE_URL"):
        Config.from_env({"HARK_LLM": "openai"}).validate()


async def test_calls_answer_any_origin_with_a_client_secret_by_default():
    client = await client_for({})
    page = "https://app.example"
    try:
        minted = await client.post(
            "/v1/realtime/client_secrets", json={}, headers={"Authorization": "Bearer sk-1"}
        )
        secret = (await minted.json())["value"]
        for path in ("/v1/realtime/calls", "/v1/realtime/calls/rtc_x/hangup", "/v1/realtime"):
            resp = await client.options(
                path,
                headers={
                    "Origin": page,
                    "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": "authorization, content-type, openai-beta",
                },
            )
            assert resp.status == 204, path
            assert resp.headers["Access-Control-Allow-Origin"] == page
            assert "openai-beta" in resp.headers["Access-Control-Allow-Headers"].lower()
        resp = await client.post(
            "/v1/realtime/calls",
            data="v=0\r\n",
            headers={"Authorization": f"Bearer {secret}", "Origin": page},
        )
        assert resp.status >= 400  # refused (still starting), yet readable by the page
        assert resp.headers["Access-Control-Allow-Origin"] == page
        assert "Location" in resp.headers["Access-Control-Expose-Headers"]
        # An API key is no credential for a foreign page: configured origins only.
        resp = await client.post(
            "/v1/realtime/calls",
            data="v=0\r\n",
            headers={"Authorization": "Bearer sk-1", "Origin": page},
        )
        assert "Access-Control-Allow-Origin" not in resp.headers
        resp = await client.options(
            "/v1/realtime/client_secrets",
            headers={"Origin": page, "Access-Control-Request-Method": "POST"},
        )
        assert resp.status == 403
        resp = await client.post(
            "/v1/realtime/client_secrets",
            json={},
            headers={"Authorization": "Bearer sk-1", "Origin": page},
        )
        assert "Access-Control-Allow-Origin" not in resp.headers
        # The demo's secret stays with its own page.
        resp = await client.options(
            "/hark/demo/client_secret",
            headers={"Origin": page, "Access-Control-Request-Method": "POST"},
        )
        assert resp.status == 403
    finally:
        await client.close()


async def test_configured_origins_narrow_the_calls_endpoints_too():
    client = await client_for({"HARK_CORS_ORIGINS": "https://app.example"})
    try:
        resp = await client.options(
            "/v1/realtime/calls",
            headers={"Origin": "https://other.example", "Access-Control-Request-Method": "POST"},
        )
        assert resp.status == 403
        resp = await client.post(
            "/v1/realtime/calls",
            data="v=0\r\n",
            headers={"Authorization": "Bearer ek_x", "Origin": "https://other.example"},
        )
        assert "Access-Control-Allow-Origin" not in resp.headers
    finally:
        await client.close()
