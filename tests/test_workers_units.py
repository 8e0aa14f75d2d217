"""The pieces of a multi-worker node that need no models: routing by call id, merged
operator views, the front's shared state over a real unix socket, the forwarded address."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from server.calls.manager import new_call_id
from server.workers.local_state import LocalState
from server.workers.merge import merge_listings, merge_metrics
from server.workers.peer import FORWARDED_FOR, FRONT_TOKEN_HEADER, front_peer_middleware
from server.workers.routing import call_id_of, least_loaded, opens_call, owner_of
from server.workers.state_server import StateServer


@dataclass
class FakeWorker:
    """A stand-in for a supervised worker: only what routing reads."""

    index: int
    ready: bool
    load: int


def test_a_call_id_names_its_worker():
    assert owner_of("rtc_w1_" + "ab" * 12) == 1
    assert owner_of("ws_w12_" + "ab" * 12) == 12
    assert owner_of("rtc_" + "ab" * 12) is None  # a single-process node's ids
    assert owner_of("rtc_wx_1") is None
    assert new_call_id().startswith("rtc_") and owner_of(new_call_id()) is None


def test_requests_about_a_call_find_it_in_path_or_query():
    assert call_id_of("/v1/realtime/calls/rtc_w0_aa", {}) == "rtc_w0_aa"
    assert call_id_of("/v1/realtime/calls/rtc_w0_aa/hangup", {}) == "rtc_w0_aa"
    assert call_id_of("/v1/operator/calls/ws_w1_bb", {}) == "ws_w1_bb"
    assert call_id_of("/v1/realtime", {"call_id": "rtc_w1_cc"}) == "rtc_w1_cc"
    assert call_id_of("/v1/realtime/client_secrets", {}) is None
    assert opens_call("POST", "/v1/realtime/calls", websocket=False)
    assert opens_call("POST", "/v1/realtime", websocket=False)
    assert opens_call("GET", "/v1/realtime", websocket=True)
    assert not opens_call("DELETE", "/v1/realtime/calls", websocket=False)
    assert not opens_call("POST", "/v1/realtime/client_secrets", websocket=False)


def test_a_new_call_goes_to_the_least_loaded_ready_worker():
    workers = [FakeWorker(0, True, 3), FakeWorker(1, False, 0), FakeWorker(2, True, 1)]
    assert least_loaded(workers).index == 2
    assert least_loaded(workers, exclude={2}).index == 0
    assert least_loaded(workers, exclude={0, 2}) is None
    tie = [FakeWorker(0, True, 1), FakeWorker(1, True, 1)]
    assert least_loaded(tie).index == 0


def test_listings_merge_worst_first_with_their_worker():
    def call(call_id: str, grade: str, mos: float) -> dict:
        return {"id": call_id, "grade": grade, "quality": {"mos": mos}, "started_at": 1.0}

    merged = merge_listings(
        {0: [call("a", "good", 4.3)], 1: [call("b", "poor", 2.1), call("c", "good", 4.0)]}
    )
    assert [(c["id"], c["worker"]) for c in merged] == [("b", 1), ("c", 1), ("a", 0)]


WORKER_METRICS = """# HELP hark_calls_started_total Calls started.
# TYPE hark_calls_started_total counter
hark_calls_started_total {n}
# HELP hark_call_mos Call quality.
# TYPE hark_call_mos histogram
hark_call_mos_bucket{{le="1.0"}} {n}
hark_call_mos_count {n}
"""


def test_metrics_merge_each_family_once_labelled_by_worker():
    text = merge_metrics({0: WORKER_METRICS.format(n=2), 1: WORKER_METRICS.format(n=5)})
    lines = text.splitlines()
    assert lines.count("# TYPE hark_calls_started_total counter") == 1
    assert lines.count("# TYPE hark_call_mos histogram") == 1
    assert 'hark_calls_started_total{worker="0"} 2' in lines
    assert 'hark_calls_started_total{worker="1"} 5' in lines
    assert 'hark_call_mos_bucket{worker="1",le="1.0"} 5' in lines
    # A family's samples stay together, after its TYPE line.
    start = lines.index("# TYPE hark_call_mos histogram")
    assert all(line.startswith("hark_call_mos") for line in lines[start + 1 :])


async def test_workers_share_one_state_through_the_front(tmp_path):
    server = StateServer(str(tmp_path / "state.sock"))
    await server.start()
    one, two = LocalState(server.path), LocalState(server.path)
    try:
        # A single-use token: claimed once, whichever worker sees it.
        assert await one.claim_once("secret:x", 60)
        assert not await two.claim_once("secret:x", 60)
        # A per-sub cap's lease group counts both workers' calls.
        assert await one.lease_add("calls:sub:alice", "t1", 15) == 1
        assert await two.lease_add("calls:sub:alice", "t2", 15) == 2
        await one.lease_remove("calls:sub:alice", "t1")
        assert await two.lease_members("calls:sub:alice") == ["t2"]
        assert await one.count_hit("rate:k", 60) == 1 and await two.count_hit("rate:k", 60) == 2
        await one.record_put("call:c", {"node": "n"}, 15)
        assert await two.record_get("call:c") == {"node": "n"}
        await two.set_value("revoked:bob", "1.5", 60)
        assert await one.values("revoked:") == {"revoked:bob": "1.5"}
        # A revocation published by one worker reaches every subscribed worker once.
        heard: list[tuple[str, str]] = []

        def listener(who: str):
            async def handle(message: str) -> None:
                heard.append((who, message))

            return handle

        one.subscribe("revocations", listener("one"))
        two.subscribe("revocations", listener("two"))
        await asyncio.sleep(0.2)
        await one.publish("revocations", "bob")
        for _ in range(50):
            if len(heard) >= 2:
                break
            await asyncio.sleep(0.02)
        assert sorted(heard) == [("one", "bob"), ("two", "bob")]
        # A worker that goes away (killed, restarted) leaves no subscriber behind.
        await two.close()
        for _ in range(50):
            if len(server.state._subscribers["revocations"]) == 1:
                break
            await asyncio.sleep(0.02)
        assert len(server.state._subscribers["revocations"]) == 1
        await one.close()
        for _ in range(50):
            if "revocations" not in server.state._subscribers:
                break
            await asyncio.sleep(0.02)
        assert "revocations" not in server.state._subscribers
    finally:
        await one.close()
        await two.close()
        await server.close()


async def test_a_lost_front_is_a_503_not_a_crash(tmp_path):
    from server.errors import Unavailable

    state = LocalState(str(tmp_path / "nobody.sock"))
    try:
        await state.claim_once("k", 1)
    except Unavailable as exc:
        assert exc.code == "shared_state_unavailable"
    else:
        raise AssertionError("no Unavailable")
    finally:
        await state.close()


async def test_the_forwarded_address_is_taken_only_with_the_front_token():
    async def remote(request: web.Request) -> web.Response:
        return web.Response(text=request.remote or "")

    app = web.Application(middlewares=[front_peer_middleware("s3cret")])
    app.router.add_get("/", remote)
    async with TestClient(TestServer(app)) as client:
        trusted = await client.get(
            "/", headers={FORWARDED_FOR: "203.0.113.9", FRONT_TOKEN_HEADER: "s3cret"}
        )
        assert await trusted.text() == "203.0.113.9"
        forged = await client.get(
            "/", headers={FORWARDED_FOR: "203.0.113.9", FRONT_TOKEN_HEADER: "guess"}
        )
        assert await forged.text() == "127.0.0.1"
        bare = await client.get("/", headers={FORWARDED_FOR: "203.0.113.9"})
        assert await bare.text() == "127.0.0.1"
