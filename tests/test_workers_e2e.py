"""A node of two worker processes behind its front (HARK_WORKERS=2), with real calls.

Real aiortc calls and the OpenAI SDK's WebSocket through the front's public port: new
calls spread over the workers, the operator sees them as one node, a hang-up and a
sideband reach the worker that owns the call, a per-sub cap holds across workers, and a
killed worker is restarted while the other goes on.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path

import aiohttp
import pytest

from server.tools.call_client import CallClient, CallError, mint_client_secret
from tests.server_process import ServerProcess, running_server
from tests.trust_cluster import bearer, error_code, make_offer, open_call, request
from tests.ws_client import SdkCall

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def node():
    env = {
        "HARK_WORKERS": "2",
        "HARK_MAX_CALLS_PER_SUB": "1",
        "HARK_MAX_CALLS": "3",  # the node's ceiling, over both workers
        "HARK_JWT_SECRET": "test-signing-secret-0123456789abcdef",
    }
    with running_server(env) as server:
        yield server


async def health(node: ServerProcess) -> dict:
    _, _, body = await request("GET", f"{node.url}/healthz")
    return body


async def listing(node: ServerProcess) -> dict[str, int]:
    """Live calls in the operator's listing through the front: call id → worker."""
    status, _, body = await request(
        "GET", f"{node.url}/v1/operator/calls", headers=bearer(node.admin_key)
    )
    assert status == 200, body
    return {call["id"]: call["worker"] for call in body["data"]}


async def webrtc_call(node: ServerProcess, sub: str | None = None) -> CallClient:
    call = CallClient(node.url, await mint_client_secret(node.url, node.api_key, sub=sub))
    await call.connect()
    return call


async def eventually(check, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result or time.monotonic() > deadline:
            return result
        await asyncio.sleep(0.2)


async def test_the_front_reports_every_worker_ready(node):
    body = await health(node)
    assert body["status"] == "ok", body
    assert [w["index"] for w in body["workers"]] == [0, 1]
    assert all(w["ready"] and w["pid"] for w in body["workers"]), body
    assert len({w["pid"] for w in body["workers"]}) == 2


async def test_two_calls_land_on_two_workers_and_hang_up_through_the_front(node):
    assert await eventually(lambda: idle(node))
    first = await webrtc_call(node)
    second = await webrtc_call(node)
    try:
        ids = {first.call_id, second.call_id}
        assert {cid.split("_")[1] for cid in ids} == {"w0", "w1"}, ids
        seen = await eventually(lambda: _has(node, ids))
        assert {seen[cid] for cid in ids} == {0, 1}, seen  # one node's view of both
        snapshot = await first_snapshot(node)
        assert ids <= {call["id"] for call in snapshot["calls"]}, snapshot
        for call in (first, second):
            status, _, _ = await request(
                "DELETE",
                f"{node.url}/v1/realtime/calls/{call.call_id}",
                headers=bearer(node.api_key),
            )
            assert status == 204
        gone = await eventually(lambda: _lacks(node, ids))
        assert gone, "the hung-up calls are still listed"
        # A call id naming no live call of its worker: the owner's own 404.
        status, _, body = await request(
            "DELETE",
            f"{node.url}/v1/realtime/calls/rtc_w1_{'0' * 24}",
            headers=bearer(node.api_key),
        )
        assert status == 404 and error_code(body) == "call_not_found"
    finally:
        await first.close()
        await second.close()


async def first_snapshot(node: ServerProcess) -> dict:
    """The operator's live stream through the front: its first event, the node's snapshot."""
    url = f"{node.url}/v1/operator/stream?token={node.admin_key}"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as http:
        async with http.get(url) as resp:
            assert resp.status == 200
            async for line in resp.content:
                if line.startswith(b"data:"):
                    event = json.loads(line[5:])
                    assert event["type"] == "snapshot", event
                    return event
    raise AssertionError("the stream ended before its snapshot")


async def read_stream_to_its_end(node: ServerProcess) -> list[dict]:
    url = f"{node.url}/v1/operator/stream?token={node.admin_key}"
    events = []
    async with aiohttp.ClientSession() as http:
        async with http.get(url) as resp:
            async for line in resp.content:
                if line.startswith(b"data:"):
                    events.append(json.loads(line[5:]))
    return events


async def _has(node: ServerProcess, ids: set[str]) -> dict[str, int] | None:
    calls = await listing(node)
    return calls if ids <= set(calls) else None


async def _lacks(node: ServerProcess, ids: set[str]) -> bool:
    return not ids & set(await listing(node))


async def test_a_sideband_through_the_front_reaches_the_owning_worker(node):
    assert await eventually(lambda: idle(node))
    calls = [await webrtc_call(node), await webrtc_call(node)]  # one on each worker
    try:
        assert {c.call_id[:7] for c in calls} == {"rtc_w0_", "rtc_w1_"}
        for index, call in enumerate(calls):
            side = SdkCall(node.url, node.api_key, call_id=call.call_id)
            try:
                await side.connect(microphone=False)
                session = side.events[0].data["session"]
                assert session["id"] == call.events[0].data["session"]["id"]
                mark_call, mark_side = len(call.events), len(side.events)
                words = f"Answer in {index + 3} words."
                await side.send(
                    {
                        "type": "session.update",
                        "session": {"type": "realtime", "instructions": words},
                    }
                )
                for event in (
                    await call.wait_for("session.updated", after=mark_call),
                    await side.wait_for("session.updated", after=mark_side),
                ):
                    assert event.data["session"]["instructions"] == words
            finally:
                await side.close()
    finally:
        for each in calls:
            await each.hangup()


async def idle(node: ServerProcess) -> bool:
    """No call in the listing and none in the front's count (a new call goes to worker 0)."""
    workers = (await health(node))["workers"]
    return not await listing(node) and all(w["calls"] == 0 for w in workers)


async def test_a_websocket_session_through_the_front(node):
    session = SdkCall(node.url, node.api_key)
    try:
        await session.connect(microphone=False)
        assert session.events[0].type == "session.created"
        ids = await eventually(lambda: _websocket_ids(node))
        assert ids and all(cid.split("_")[1] in ("w0", "w1") for cid in ids), ids
    finally:
        await session.close()


async def _websocket_ids(node: ServerProcess) -> list[str]:
    return [cid for cid in await listing(node) if cid.startswith("ws_")]


async def test_the_per_sub_cap_holds_across_workers(node):
    assert await eventually(lambda: idle(node))
    first = await webrtc_call(node, sub="alice")  # on the least loaded worker
    try:
        # The front hands the next call to the other, idle worker, which must refuse it.
        with pytest.raises(CallError, match="sub_call_limit"):
            await webrtc_call(node, sub="alice")
        other = await webrtc_call(node, sub="bob")  # the refusal was the cap's, not a fault
        placed = await eventually(lambda: _has(node, {first.call_id, other.call_id}))
        assert placed[first.call_id] != placed[other.call_id], placed
        await other.hangup()
    finally:
        await first.hangup()


async def test_the_call_ceiling_is_the_nodes_not_each_workers(node):
    """HARK_MAX_CALLS=3 over two workers: three calls live (two on one worker), the fourth
    is refused by the front with the OpenAI-style body and Retry-After, and a hang-up
    makes room again."""
    assert await eventually(lambda: idle(node))
    calls = [await webrtc_call(node) for _ in range(3)]
    try:
        assert {cid.split("_")[1] for cid in (c.call_id for c in calls)} == {"w0", "w1"}
        pc, offer = await make_offer()
        status, headers, body = await open_call(node, node.api_key, offer)
        await pc.close()
        assert status == 503 and error_code(body) == "server_full", body
        assert (
            body["error"]["type"] == "server_error" and "3 concurrent" in body["error"]["message"]
        )
        assert int(headers["Retry-After"]) > 0
        await calls.pop().hangup()
        room = await eventually(lambda: _workers_hold(node, 2))
        assert room, "the hung-up call still counts"
        calls.append(await webrtc_call(node))
    finally:
        for call in calls:
            await call.hangup()


async def _workers_hold(node: ServerProcess, count: int) -> bool:
    return sum(w["calls"] for w in (await health(node))["workers"]) == count


async def _lacks_any(node: ServerProcess) -> bool:
    return not await listing(node)


async def test_a_revocation_ends_the_subs_calls_on_every_worker(node):
    assert await eventually(lambda: idle(node))
    calls = {sub: await webrtc_call(node, sub=sub) for sub in ("dave", "erin")}
    try:
        placed = await eventually(lambda: _has(node, {c.call_id for c in calls.values()}))
        assert len(set(placed.values())) == 2, placed  # one on each worker
        # Each revocation goes to one worker (in turn); the other must hear of it too.
        for sub in calls:
            status, _, body = await request(
                "POST",
                f"{node.url}/hark/revocations",
                json={"sub": sub},
                headers=bearer(node.api_key),
            )
            assert status == 200, body
        for call in calls.values():
            ended = await call.wait_for("error", timeout=10)
            assert ended.data["error"]["code"] == "session_revoked", ended.data
        assert await eventually(lambda: _lacks_any(node))
    finally:
        for call in calls.values():
            await call.close()


async def test_an_upload_streams_through_the_front_to_a_worker(node):
    """1 MB, beyond what the front would buffer: the worker reads it and judges it."""
    form = aiohttp.FormData()
    form.add_field("name", "Noise")
    form.add_field("text", "not a voice")
    form.add_field("file", b"RIFF" + bytes(1024 * 1024), filename="noise.wav")
    status, _, body = await request(
        "POST", f"{node.url}/v1/voices", data=form, headers=bearer(node.api_key)
    )
    assert status == 400, body  # the worker's verdict on the audio, not the front's 413
    assert error_code(body) not in ("request_too_large", "file_too_large"), body


async def test_metrics_cover_every_worker(node):
    status, _, text = await request("GET", f"{node.url}/metrics", headers=bearer(node.admin_key))
    assert status == 200
    assert 'worker="0"' in text and 'worker="1"' in text
    assert "hark_workers_ready 2" in text
    # Each family once: its TYPE line is not repeated per worker.
    types = [line for line in text.splitlines() if line.startswith("# TYPE ")]
    assert len(types) == len(set(types))
    status, _, body = await request("GET", f"{node.url}/metrics")
    assert status == 401, body  # the workers' own refusal, passed on


async def test_a_killed_worker_is_restarted_and_the_other_serves_meanwhile(node):
    before = {w["index"]: w for w in (await health(node))["workers"]}
    victim = await webrtc_call(node)
    index = int(victim.call_id.split("_")[1][1:])
    stream = asyncio.create_task(read_stream_to_its_end(node))
    await asyncio.sleep(1.0)
    os.kill(before[index]["pid"], signal.SIGKILL)
    try:
        # The operator's merged stream ends, so the dashboard reconnects to the new node.
        events = await asyncio.wait_for(stream, 20)
        assert events and events[0]["type"] == "snapshot", events

        # Meanwhile new calls go to the worker still standing.
        async def down() -> bool:
            return not next(w for w in (await health(node))["workers"] if w["index"] == index)[
                "ready"
            ]

        assert await eventually(down)
        survivor = await webrtc_call(node)
        assert survivor.call_id.startswith(f"rtc_w{1 - index}_"), survivor.call_id
        await survivor.hangup()
        # The dead worker's calls are gone: their ids answer 404, not a hang.
        status, _, body = await request(
            "DELETE", f"{node.url}/v1/realtime/calls/{victim.call_id}", headers=bearer(node.api_key)
        )
        assert status == 404 and error_code(body) == "call_not_found", body
    finally:
        await victim.close()

    async def restarted() -> dict | None:
        worker = next(w for w in (await health(node))["workers"] if w["index"] == index)
        return worker if worker["ready"] and worker["restarts"] == 1 else None

    worker = await eventually(restarted, timeout=180)
    assert worker and worker["pid"] != before[index]["pid"], worker
    assert "exited with -9" in node.log()


async def test_sigterm_on_the_front_stops_every_worker(node):
    """Last in this module: it stops the node."""
    pids = [w["pid"] for w in (await health(node))["workers"]]
    node.process.terminate()
    assert await asyncio.to_thread(node.process.wait, 30) == 0

    async def all_gone() -> bool:
        return not any(_running(pid) for pid in pids)

    assert await eventually(all_gone, timeout=20), pids


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"
