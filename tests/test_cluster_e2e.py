"""Many nodes: two real Hark nodes on a real redis-server behind a real HAProxy (the shipped
`deploy/haproxy.cfg`), real aiortc calls through the balancer.

A call's hang-up, sideband and operator requests reach the node that holds it whichever
node gets them; the operator listing shows every node's calls; SIGTERM drains a node:
new calls refused at once, the live call told (`session_server_shutdown`) and closed after
`HARK_DRAIN_TIMEOUT_S`. The drain test stops node A, so it runs last.
"""

from __future__ import annotations

import asyncio
import json
import signal
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from server.tools.call_client import CallClient
from signaling.forwarding import FORWARDED_BY
from tests.haproxy_process import Balancer, running_haproxy
from tests.redis_process import running_redis
from tests.server_process import ServerProcess, running_server
from tests.test_sideband_e2e import handshake_status
from tests.trust_cluster import (
    ADMIN_KEY,
    API_KEY,
    bearer,
    error_code,
    make_offer,
    mint,
    node_env,
    open_call,
    request,
)
from tests.ws_client import SdkCall

pytestmark = pytest.mark.slow

DRAIN_S = 4


@dataclass
class Cluster:
    a: ServerProcess
    b: ServerProcess
    lb: Balancer

    def node(self, name: str) -> ServerProcess:
        return {"lb-a": self.a, "lb-b": self.b}[name]

    def other(self, name: str) -> ServerProcess:
        return {"lb-a": self.b, "lb-b": self.a}[name]


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    overrides = {"HARK_DRAIN_TIMEOUT_S": str(DRAIN_S), "HARK_IDLE_TIMEOUT": "120"}
    with (
        running_redis() as redis_url,
        running_server(node_env(redis_url, "lb-a", **overrides)) as a,
        running_server(node_env(redis_url, "lb-b", **overrides)) as b,
        running_haproxy({"hark-a": a.port, "hark-b": b.port}) as lb,
    ):
        yield Cluster(a, b, lb)


async def listing(url: str) -> dict[str, Any]:
    status, _, body = await request("GET", f"{url}/v1/operator/calls", headers=bearer(ADMIN_KEY))
    assert status == 200, body
    return dict(body)


async def owner_of(cluster: Cluster, call_id: str) -> str:
    for _ in range(50):  # the registry's writer records a new call within milliseconds
        # Asked of node A, not the balancer: round robin then only sees the offers.
        nodes = {c["id"]: c["node"] for c in (await listing(cluster.a.url))["data"]}
        if call_id in nodes:
            return nodes[call_id]
        await asyncio.sleep(0.1)
    raise AssertionError(f"{call_id} is in no node's listing")


def forwarded_by(headers: dict[str, str]) -> str | None:
    """The node a response was forwarded from (header names in any case)."""
    return {k.lower(): v for k, v in headers.items()}.get(FORWARDED_BY.lower())


def health(server: ServerProcess) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"{server.url}/healthz", timeout=2) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


async def test_calls_through_the_balancer_are_reached_through_either_node(cluster):
    calls: dict[str, CallClient] = {}
    owners: dict[str, str] = {}
    try:
        # Round robin spreads the offers: call until each node holds one.
        for _ in range(6):
            call = CallClient(cluster.lb.url, await mint(cluster.a))
            await call.connect()
            calls[call.call_id] = call
            owners[call.call_id] = await owner_of(cluster, call.call_id)
            if set(owners.values()) == {"lb-a", "lb-b"}:
                break
        assert set(owners.values()) == {"lb-a", "lb-b"}, owners

        # The operator view, asked of either node or the balancer, lists the whole cluster.
        for url in (cluster.lb.url, cluster.a.url, cluster.b.url):
            body = await listing(url)
            listed = {c["id"]: c["node"] for c in body["data"]}
            assert {k: listed.get(k) for k in owners} == owners
            assert {n["node"]: n["state"] for n in body["nodes"]} == {"lb-a": "ok", "lb-b": "ok"}
            assert all("grade" in c and "quality" in c for c in body["data"])

        for call_id, owner in owners.items():
            stranger = cluster.other(owner)
            # One call's timeline, asked of the node that does not hold it.
            status, headers, body = await request(
                "GET", f"{stranger.url}/v1/operator/calls/{call_id}", headers=bearer(ADMIN_KEY)
            )
            assert status == 200, body
            assert body["id"] == call_id and forwarded_by(headers) == owner
            # A request already forwarded by a node is answered where it lands: no loop.
            status, _, body = await request(
                "GET",
                f"{stranger.url}/v1/operator/calls/{call_id}",
                headers={**bearer(ADMIN_KEY), FORWARDED_BY: "lb-x"},
            )
            assert (status, error_code(body)) == (404, "call_not_found")

            # A sideband joins through the stranger and drives the call on its owner.
            side = SdkCall(stranger.url, API_KEY, call_id=call_id)
            try:
                await side.connect(microphone=False)
                call = calls[call_id]
                assert side.events[0].data["session"]["id"] == call.events[0].data["session"]["id"]
                mark = len(call.events)
                await side.send(
                    {
                        "type": "session.update",
                        "session": {"type": "realtime", "instructions": "Hi."},
                    }
                )
                updated = await call.wait_for("session.updated", after=mark, timeout=10)
                assert updated.data["session"]["instructions"] == "Hi."
            finally:
                await side.close()
            # The owner's refusal comes back as the owner said it.
            status, body, _ = await handshake_status(stranger, f"call_id={call_id}", "sk-wrong")
            assert status == 401, body

        # Hang-ups: each call's own client secret, sent to the node that does not hold it.
        forwarded = 0
        for call_id, owner in owners.items():
            call = calls.pop(call_id)
            status, headers, _ = await request(
                "DELETE",
                f"{cluster.other(owner).url}/v1/realtime/calls/{call_id}",
                headers=bearer(call.token),
            )
            assert status == 204
            forwarded += forwarded_by(headers) == owner
            await call.close()
        assert forwarded == len(owners)
        for _ in range(50):
            listed = {c["id"] for c in (await listing(cluster.lb.url))["data"]}
            if not listed & set(owners):
                break
            await asyncio.sleep(0.1)
        assert not listed & set(owners), listed
    finally:
        for call in calls.values():
            await call.hangup()


async def test_hangup_through_the_balancer_whichever_node_answers(cluster):
    """Round robin sends a call's requests to each node in turn: both the owner and the
    node that forwards to it answer; then the hang-up through the balancer."""
    call = CallClient(cluster.lb.url, await mint(cluster.b))
    await call.connect()
    owner = await owner_of(cluster, call.call_id)
    paths = set()
    try:
        for _ in range(10):
            status, headers, _ = await request(
                "GET",
                f"{cluster.lb.url}/v1/operator/calls/{call.call_id}",
                headers=bearer(ADMIN_KEY),
            )
            assert status == 200
            # HAProxy passes header names in lower case.
            paths.add(forwarded_by(headers) == owner)
            if len(paths) == 2:
                break
        # Answered by the owner itself and forwarded to it by the other node.
        assert paths == {True, False}, cluster.lb.log()[-2000:]
        status, _, _ = await request(
            "DELETE", f"{cluster.lb.url}{call.call_path}", headers=bearer(call.token)
        )
        assert status == 204
        assert call.call_id not in {c["id"] for c in (await listing(cluster.lb.url))["data"]}
        # Hanging up again is answered alike by both nodes: the other one still routes
        # the ended call to its node, which knows it ended.
        again = set()
        for _ in range(4):
            status, headers, _ = await request(
                "DELETE", f"{cluster.lb.url}{call.call_path}", headers=bearer(call.token)
            )
            again.add((status, forwarded_by(headers) == owner))
        assert again == {(204, True), (204, False)}, again
    finally:
        await call.close()


async def test_sigterm_drains_the_node(cluster):
    a, b = cluster.a, cluster.b
    staying = CallClient(a.url, await mint(a))
    await staying.connect()
    leaving = CallClient(a.url, await mint(a))
    await leaving.connect()
    socket_call = SdkCall(a.url, API_KEY)  # a call over a WebSocket is told the same way
    await socket_call.connect(microphone=False)
    try:
        a.process.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.3)
        # No new calls, at once, with a Retry-After; /healthz tells the balancer.
        pc, offer = await make_offer()
        try:
            status, headers, body = await open_call(a, await mint(b), offer)
        finally:
            await pc.close()
        assert (status, error_code(body)) == (503, "server_draining"), body
        assert int(headers["Retry-After"]) >= 1
        status, body = health(a)
        assert (status, body["status"]) == (503, "draining")
        # Through the balancer a new call still gets in (on the other node).
        fresh = CallClient(cluster.lb.url, await mint(b))
        await fresh.connect()
        try:
            assert await owner_of(cluster, fresh.call_id) == "lb-b"
            body = await listing(b.url)
            assert {n["node"]: n["state"] for n in body["nodes"]}["lb-a"] == "draining"
        finally:
            await fresh.hangup()
        # A draining node's calls go on: one hangs up as usual.
        assert "error" not in staying.types()
        await leaving.hangup()
        # The other is told, then closed, once the drain timeout is over; then A exits.
        told = await staying.wait_for("error", timeout=DRAIN_S + 15)
        assert told.data["error"]["code"] == "session_server_shutdown"
        told = await socket_call.wait_for("error", timeout=5)
        assert told.data["error"]["code"] == "session_server_shutdown"
        for _ in range(50):
            if socket_call.close_code is not None:
                break
            await asyncio.sleep(0.1)
        assert socket_call.close_code == 1001  # going away
        assert await asyncio.to_thread(a.process.wait, 20) == 0, a.log()[-3000:]
        assert "drain: ending 2 call(s) with server_shutdown" in a.log()
    finally:
        await socket_call.close()
        await staying.close()
        await leaving.close()
