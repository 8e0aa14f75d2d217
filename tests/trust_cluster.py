"""Helpers for the tests that run against two Hark nodes sharing a redis-server."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiortc import RTCConfiguration, RTCPeerConnection

from tests.server_process import ServerProcess

API_KEY = "sk-cluster-test-key-0123456789"
ADMIN_KEY = "sk-cluster-admin-key-0123456789"
SIGNING_SECRET = "cluster-signing-secret-0123456789abcdef"


def node_env(redis_url: str, node: str, **overrides: str) -> dict[str, str]:
    return {
        "HARK_REDIS_URL": redis_url,
        "HARK_NODE_ID": node,
        "HARK_API_KEYS": API_KEY,
        "HARK_ADMIN_KEYS": ADMIN_KEY,
        "HARK_JWT_SECRET": SIGNING_SECRET,
        "HARK_LOG_FORMAT": "json",
        "HARK_IDLE_TIMEOUT": "3",
        "HARK_ICE_TIMEOUT": "3",
        "HARK_MAX_CALLS": "120",
        # Churn tests open calls in bursts: admission by measured load would pace them.
        "HARK_ADMISSION_LOAD": "false",
        "HARK_MAX_CALLS_PER_SUB": "2",
        "HARK_REGISTRY_TTL": "3",
        # The leak check opens hundreds of calls from one address in a few minutes.
        "HARK_RATE_CALLS_PER_MIN": "0",
        "HARK_RATE_PER_ADDRESS_PER_MIN": "0",
        "HARK_RATE_MINT_PER_MIN": "0",
        **overrides,
    }


@dataclass
class Cluster:
    a: ServerProcess
    b: ServerProcess
    redis_url: str


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def request(method: str, url: str, **kwargs: Any) -> tuple[int, dict[str, str], Any]:
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        async with http.request(method, url, **kwargs) as resp:
            raw = await resp.read()
            body: Any = raw.decode(errors="replace")
            if resp.content_type == "application/json":
                body = json.loads(raw)
            return resp.status, dict(resp.headers), body


async def mint(node: ServerProcess, **body: Any) -> str:
    status, _, payload = await request(
        "POST", f"{node.url}/v1/realtime/client_secrets", json=body, headers=bearer(API_KEY)
    )
    assert status == 200, payload
    return str(payload["value"])


async def make_offer() -> tuple[RTCPeerConnection, str]:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("audio", direction="sendrecv")
    pc.createDataChannel("oai-events")
    await pc.setLocalDescription(await pc.createOffer())
    return pc, pc.localDescription.sdp


async def open_call(node: ServerProcess, token: str, offer: str) -> tuple[int, dict, Any]:
    return await request(
        "POST",
        f"{node.url}/v1/realtime/calls",
        data=offer,
        headers={**bearer(token), "Content-Type": "application/sdp"},
    )


async def hang_up(node: ServerProcess, location: str) -> None:
    status, _, _ = await request("DELETE", f"{node.url}{location}", headers=bearer(API_KEY))
    assert status == 204


async def diagnostics(node: ServerProcess) -> dict[str, Any]:
    status, _, body = await request(
        "GET", f"{node.url}/hark/diagnostics", headers=bearer(ADMIN_KEY)
    )
    assert status == 200, body
    return dict(body)


def error_code(body: Any) -> str:
    assert isinstance(body, dict) and set(body) == {"error"}, body
    return str(body["error"]["code"])
