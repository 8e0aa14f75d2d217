"""Trust against two real nodes sharing a real redis-server: single use across nodes,
limits, revocation ending calls everywhere, operator tokens, watchdogs, JSON logs."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time

import pytest
from aiortc import RTCSessionDescription

from server.tools.call_client import CallClient
from tests.server_process import ROOT
from tests.trust_cluster import (
    ADMIN_KEY,
    API_KEY,
    SIGNING_SECRET,
    bearer,
    diagnostics,
    error_code,
    hang_up,
    make_offer,
    mint,
    open_call,
    request,
)

pytestmark = pytest.mark.slow


async def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


async def live(node) -> int:
    return int((await diagnostics(node))["calls"])


async def test_a_secret_opens_one_call_on_any_node(hark_cluster):
    a, b = hark_cluster.a, hark_cluster.b
    secret = await mint(a)
    pc, offer = await make_offer()
    try:
        status, headers, body = await open_call(b, secret, offer)
        assert status == 201, body
        for node in (a, b):
            _, second = await make_offer()
            status, _, body = await open_call(node, secret, second)
            assert status == 401 and error_code(body) == "token_already_used", body
        cluster_view = await diagnostics(a)
        assert cluster_view["cluster_calls"] >= 1, "node A does not see node B's call"
        await hang_up(b, headers["Location"])
    finally:
        await pc.close()


async def test_sub_limit_spans_nodes_and_a_refusal_does_not_burn_the_secret(hark_cluster):
    a, b = hark_cluster.a, hark_cluster.b
    sub = f"user-{time.time_ns()}"
    secrets = [await mint(a, sub=sub) for _ in range(3)]
    pcs, locations = [], []
    try:
        for node, secret in ((a, secrets[0]), (b, secrets[1])):
            pc, offer = await make_offer()
            pcs.append(pc)
            status, headers, body = await open_call(node, secret, offer)
            assert status == 201, body
            locations.append((node, headers["Location"]))
        pc, offer = await make_offer()
        pcs.append(pc)
        status, headers, body = await open_call(a, secrets[2], offer)
        assert status == 429 and error_code(body) == "sub_call_limit", body
        assert int(headers["Retry-After"]) > 0
        node, location = locations.pop(0)
        await hang_up(node, location)
        await asyncio.sleep(0.3)  # the registry writes the hang-up in the background
        status, headers, body = await open_call(a, secrets[2], offer)
        assert status == 201, body
        locations.append((a, headers["Location"]))
    finally:
        for node, location in locations:
            await hang_up(node, location)
        for pc in pcs:
            await pc.close()


async def test_node_capacity_is_503_server_full_with_retry_after(hark_cluster):
    b = hark_cluster.b  # at most 2 calls
    await wait_until(lambda: _is(live(b), 0), 15, "node B to be empty")
    pcs, locations = [], []
    try:
        for _ in range(2):
            pc, offer = await make_offer()
            pcs.append(pc)
            status, headers, body = await open_call(b, API_KEY, offer)
            assert status == 201, body
            locations.append(headers["Location"])
        pc, offer = await make_offer()
        pcs.append(pc)
        secret = await mint(b)
        status, headers, body = await open_call(b, secret, offer)
        assert status == 503 and error_code(body) == "server_full", body
        assert int(headers["Retry-After"]) > 0
        await hang_up(b, locations.pop())
        status, headers, body = await open_call(b, secret, offer)  # the secret still works
        assert status == 201, body
        locations.append(headers["Location"])
    finally:
        for location in locations:
            await hang_up(b, location)
        for pc in pcs:
            await pc.close()


async def _is(value, expected) -> bool:
    return (await value) == expected


async def test_revoking_a_sub_ends_its_calls_on_every_node(hark_cluster):
    a, b = hark_cluster.a, hark_cluster.b
    sub = f"leaver-{time.time_ns()}"
    clients = [CallClient(a.url, await mint(a, sub=sub)), CallClient(b.url, await mint(b, sub=sub))]
    bystander = CallClient(b.url, await mint(b, sub="someone-else"))
    unused = await mint(a, sub=sub)
    try:
        for client in (*clients, bystander):
            await client.connect()
        status, _, body = await request(
            "POST", f"{a.url}/hark/revocations", json={"sub": sub}, headers=bearer(API_KEY)
        )
        assert status == 200 and body["sub"] == sub and body["calls_ended"] == 1, body
        for client in clients:
            event = await client.wait_for("error", timeout=10)
            assert event.data["error"]["code"] == "session_revoked"
        _, offer = await make_offer()
        status, _, body = await open_call(b, unused, offer)
        assert status == 401 and error_code(body) == "client_secret_revoked", body
        fresh = await mint(a, sub=sub)  # signing in again works
        pc, offer = await make_offer()
        status, headers, body = await open_call(b, fresh, offer)
        assert status == 201, body
        await hang_up(b, headers["Location"])
        await pc.close()
        assert "error" not in bystander.types(), "another user's call was touched"
    finally:
        for client in (*clients, bystander):
            await client.hangup()


async def test_operator_tokens_and_admin_key(hark_cluster):
    a, b = hark_cluster.a, hark_cluster.b
    env = {**os.environ, "HARK_JWT_SECRET": SIGNING_SECRET}
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "server", "token", "--scope", "operator", "--ttl", "600"),
        *("--sub", "ops-1"),
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
    )
    stdout, _ = await process.communicate()
    assert process.returncode == 0
    minted = stdout.decode().strip()
    assert minted.startswith("ek_")
    url = "/hark/diagnostics"
    status, _, body = await request("GET", f"{b.url}{url}", headers=bearer(minted))
    assert status == 200 and body["node"] == "node-b", body
    for token, expected in (
        (await mint(a), (403, "insufficient_scope")),
        (API_KEY, (403, "operator_required")),
        ("sk-nope", (401, "invalid_api_key")),
        ("ek_garbage", (401, "invalid_client_secret")),
    ):
        status, _, body = await request("GET", f"{a.url}{url}", headers=bearer(token))
        assert (status, error_code(body)) == expected, body
    status, _, body = await request("GET", f"{a.url}{url}")
    assert (status, error_code(body)) == (401, "missing_authorization")
    # The admin endpoint mints operator tokens; only with the admin key.
    admin = f"{a.url}/hark/admin/tokens"
    status, _, body = await request(
        "POST", admin, json={"scope": "operator", "ttl_seconds": 60}, headers=bearer(ADMIN_KEY)
    )
    assert status == 200 and body["scope"] == "operator", body
    status, _, _ = await request("GET", f"{b.url}{url}", headers=bearer(body["value"]))
    assert status == 200
    status, _, body = await request("POST", admin, json={}, headers=bearer(API_KEY))
    assert (status, error_code(body)) == (403, "admin_required")
    for bad in ({"ttl_seconds": 10**9}, {"sub": None}):  # a null sub: schemathesis
        status, _, body = await request("POST", admin, json=bad, headers=bearer(ADMIN_KEY))
        assert (status, error_code(body)) == (400, "invalid_value")
    # Revoking the operator's sub on A refuses the token on B too (pub/sub).
    status, _, _ = await request(
        "POST", f"{a.url}/hark/revocations", json={"sub": "ops-1"}, headers=bearer(ADMIN_KEY)
    )
    assert status == 200

    async def refused() -> bool:
        status, _, _ = await request("GET", f"{b.url}{url}", headers=bearer(minted))
        return status == 401

    await wait_until(refused, 5, "node B to refuse the revoked operator token")


async def test_watchdogs_end_silent_unconnected_and_overlong_calls(hark_cluster):
    a, b = hark_cluster.a, hark_cluster.b
    # ICE never connects: the offer is posted, the answer never applied.
    pc, offer = await make_offer()
    status, headers, _ = await open_call(a, API_KEY, offer)
    assert status == 201
    ice_call = headers["Location"].rsplit("/", 1)[-1]
    await pc.close()
    # Connected, but the client sends no audio at all: idle timeout (3 s on node A).
    silent, offer = await make_offer()
    for transceiver in silent.getTransceivers():
        transceiver.direction = "recvonly"
    await silent.setLocalDescription(await silent.createOffer())
    status, headers, answer = await open_call(a, API_KEY, silent.localDescription.sdp)
    assert status == 201, answer
    idle_call = headers["Location"].rsplit("/", 1)[-1]
    await silent.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    # Overlong: node B ends any call after 8 s, even one that keeps talking.
    talker = CallClient(b.url, await mint(b))
    await talker.connect()
    try:
        event = await talker.wait_for("error", timeout=20)
        assert event.data["error"]["code"] == "session_max_duration"
    finally:
        await talker.hangup()
    reasons = await ended_reasons(a, {ice_call, idle_call}, timeout=15)
    assert reasons == {ice_call: "ice_timeout", idle_call: "idle_timeout"}, reasons
    await silent.close()


async def ended_reasons(node, call_ids: set[str], timeout: float) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while True:
        found = {
            entry["call_id"]: entry["reason"]
            for entry in json_lines(node.log())
            if entry.get("event") == "call.ended" and entry.get("call_id") in call_ids
        }
        if set(found) == call_ids or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.3)


def json_lines(log: str) -> list[dict]:
    """Complete JSON log lines (the last one may still be being written)."""
    entries = []
    for line in log.splitlines():
        if line.startswith("{"):
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return entries


async def test_json_logs_follow_a_call_without_secrets_or_transcripts(hark_cluster):
    a = hark_cluster.a
    secret = await mint(a, sub="logged-user")
    client = CallClient(a.url, secret)
    await client.connect()
    client.send(
        {
            "type": "conversation.item.create",
            "item": {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "Say the word marmalade."}],
            },
        }
    )
    client.send({"type": "response.create"})
    await client.wait_for("hark.metrics", timeout=90)
    await client.hangup()
    call_id = client.call_id
    await ended_reasons(a, {call_id}, timeout=10)
    log = a.log()
    lines = [line for line in log.splitlines() if line.strip()]
    entries = json_lines(log)
    # Everything but the CLI's own "hark: …" banner lines is one JSON object per line.
    assert all(line.startswith("{") or line.startswith("hark: ") for line in lines), [
        line for line in lines if not line.startswith(("{", "hark: "))
    ][:5]
    events = [e["event"] for e in entries if e.get("call_id") == call_id and "event" in e]
    for expected in ("call.created", "call.connected", "call.turn", "call.ended"):
        assert expected in events, (expected, events)
    created = next(
        e for e in entries if e.get("event") == "call.created" and e["call_id"] == call_id
    )
    assert created["sub"] == "logged-user" and created["node"] == "node-a"
    turn = next(e for e in entries if e.get("event") == "call.turn" and e["call_id"] == call_id)
    assert isinstance(turn["timings"], dict) and turn["timings"]
    requests = [e for e in entries if e.get("event") == "http.request"]
    assert any(r["status"] == 201 and r["call_id"] == call_id for r in requests)
    assert all({"method", "path", "status", "ms", "request_id"} <= set(r) for r in requests)
    # Not a bare "ek_": the fuzz tests sharing this server request paths such as "/ek_".
    assert secret not in log and "ek_eyJ" not in log, "a client secret leaked into the log"
    assert API_KEY not in log and ADMIN_KEY not in log
    assert "a=fingerprint" not in log, "SDP leaked into the log"
    assert "marmalade" not in log.lower(), "transcripts are logged without HARK_LOG_TRANSCRIPTS"
