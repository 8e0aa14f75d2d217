"""The call router (signaling/forwarding.py) between two in-process aiohttp apps on real
sockets: a *front* node that holds no call and an *owner* node with stand-in handlers that
echo what reached them. The shared state is one `MemoryState` (the e2e test uses Redis)."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestServer

from server.calls.runtime import NodeRuntime
from server.cluster.nodes import NodeDirectory
from server.cluster.registry import CallRegistry
from server.cluster.shared_state import MemoryState
from server.config import Config, ConfigError
from signaling.errors import ApiError, error_middleware
from signaling.forwarding import FORWARDED_BY, CallRouter
from tests.server_process import free_port

CALL = "rtc_0123456789abcdef01234567"


def _echo(request: web.Request, where: str) -> web.Response:
    return web.json_response(
        {
            "where": where,
            "authorization": request.headers.get("Authorization"),
            "forwarded_by": request.headers.get(FORWARDED_BY),
            "method": request.method,
            "query": dict(request.query),
        },
        status=200 if where == "owner" else 404,
    )


def stand_in_app(where: str, router: CallRouter | None = None) -> web.Application:
    """The call routes, answered by handlers that say where they ran (the owner joins
    sidebands and echoes; the front refuses with 404 like a node without the call)."""
    app = web.Application(middlewares=[error_middleware])
    if router is not None:
        app.middlewares.append(router.middleware)

    async def call_route(request: web.Request) -> web.Response:
        return _echo(request, where)

    async def realtime(request: web.Request) -> web.StreamResponse:
        if where != "owner":
            raise ApiError(404, "call_not_found", "not here")
        if request.headers.get("Authorization") != "Bearer sk-good":
            raise ApiError(401, "invalid_api_key", "owner says no")
        socket = web.WebSocketResponse(protocols=("realtime",))
        await socket.prepare(request)
        await socket.send_str(json.dumps({"type": "joined", "via": request.headers[FORWARDED_BY]}))
        async for message in socket:
            if message.data == "bye":
                await socket.close(code=4000, message=b"call ended: hangup")
            elif message.type == WSMsgType.TEXT:
                await socket.send_str("echo:" + message.data)
        return socket

    app.router.add_delete("/v1/realtime/calls/{call_id}", call_route)
    app.router.add_get("/v1/operator/calls/{call_id}", call_route)
    app.router.add_get("/v1/realtime", realtime)
    return app


@dataclass
class Pair:
    front: TestServer
    owner: TestServer
    shared: MemoryState

    def url(self, path: str) -> str:
        return str(self.front.make_url(path))


@pytest.fixture
async def pair() -> AsyncIterator[Pair]:
    shared = MemoryState()
    owner = TestServer(stand_in_app("owner"))
    await owner.start_server()
    owner_url = str(owner.make_url("")).rstrip("/")
    await NodeDirectory(shared, "owner", owner_url, ttl_s=30, state=lambda: "ok").publish()
    registry = CallRegistry(shared, "front", ttl_s=30, max_calls=0, max_per_key=0, max_per_sub=0)
    front_directory = NodeDirectory(shared, "front", "http://front", ttl_s=30, state=lambda: "ok")
    router = CallRouter("front", NodeRuntime(), registry, front_directory)
    front = TestServer(stand_in_app("front", router))
    await front.start_server()
    await shared.record_put("call:" + CALL, {"call_id": CALL, "node": "owner"}, 30)
    try:
        yield Pair(front, owner, shared)
    finally:
        await router.close()
        await front.close()
        await owner.close()


async def fetch(method: str, url: str, **kwargs: object) -> tuple[int, dict, dict]:
    async with aiohttp.ClientSession() as http:
        async with http.request(method, url, **kwargs) as resp:  # type: ignore[arg-type]
            return resp.status, dict(resp.headers), await resp.json()


async def test_a_call_request_is_forwarded_with_the_callers_credentials(pair):
    for method, path in (
        ("DELETE", f"/v1/realtime/calls/{CALL}"),
        ("GET", f"/v1/operator/calls/{CALL}?x=1"),
    ):
        status, headers, body = await fetch(
            method, pair.url(path), headers={"Authorization": "Bearer ek_abc"}
        )
        assert (status, body["where"], body["method"]) == (200, "owner", method)
        assert body["authorization"] == "Bearer ek_abc"  # the owner checks the caller's own
        assert body["forwarded_by"] == "front" and headers[FORWARDED_BY] == "owner"
    assert body["query"] == {"x": "1"}


async def test_a_forwarded_request_is_never_forwarded_again(pair):
    status, _, body = await fetch(
        "DELETE", pair.url(f"/v1/realtime/calls/{CALL}"), headers={FORWARDED_BY: "elsewhere"}
    )
    assert (status, body["where"]) == (404, "front")


async def test_an_unknown_call_or_a_node_without_a_url_is_answered_here(pair):
    status, _, body = await fetch("DELETE", pair.url("/v1/realtime/calls/rtc_unknown"))
    assert (status, body["where"]) == (404, "front")
    await pair.shared.record_delete("node:owner")
    status, _, body = await fetch("DELETE", pair.url(f"/v1/realtime/calls/{CALL}"))
    assert (status, body["where"]) == (404, "front")


async def test_an_unreachable_owner_is_502_with_retry_after(pair):
    dead = f"http://127.0.0.1:{free_port()}"
    await NodeDirectory(pair.shared, "owner", dead, ttl_s=30, state=lambda: "ok").publish()
    status, headers, body = await fetch("DELETE", pair.url(f"/v1/realtime/calls/{CALL}"))
    assert (status, body["error"]["code"]) == (502, "call_node_unreachable")
    assert headers["Retry-After"] == "2"


async def test_a_sideband_is_relayed_both_ways_and_a_refusal_passed_on(pair):
    url = pair.url(f"/v1/realtime?call_id={CALL}").replace("http", "ws", 1)
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(
            url, headers={"Authorization": "Bearer sk-good"}, protocols=("realtime",)
        ) as ws:
            assert ws.protocol == "realtime"
            assert json.loads((await ws.receive()).data) == {"type": "joined", "via": "front"}
            await ws.send_str("hello")
            assert (await ws.receive()).data == "echo:hello"
            await ws.send_str("bye")  # the owner closes: its code and reason come through
            closing = await ws.receive()
            assert (closing.type, closing.data, closing.extra) == (
                WSMsgType.CLOSE,
                4000,
                "call ended: hangup",
            )
        async with http.get(
            pair.url(f"/v1/realtime?call_id={CALL}"),
            headers={
                "Authorization": "Bearer sk-bad",
                "Connection": "Upgrade",
                "Upgrade": "websocket",
                "Sec-WebSocket-Version": "13",
                "Sec-WebSocket-Key": "MDEyMzQ1Njc4OWFiY2RlZg==",
            },
        ) as resp:
            assert resp.status == 401
            assert (await resp.json())["error"]["message"] == "owner says no"


def test_the_node_url_defaults_to_host_and_port_and_must_be_http() -> None:
    assert Config.from_env({"HARK_PORT": "9001"}).node_url == "http://127.0.0.1:9001"
    wildcard = Config.from_env({"HARK_HOST": "0.0.0.0", "HARK_PORT": "9001"})
    assert wildcard.node_url == f"http://{socket.gethostname()}:9001"
    given = Config.from_env({"HARK_NODE_URL": "http://hark-a:8080/"})
    assert given.node_url == "http://hark-a:8080"
    given.validate()
    with pytest.raises(ConfigError, match="HARK_NODE_URL"):
        Config.from_env({"HARK_NODE_URL": "hark-a:8080"}).validate()
