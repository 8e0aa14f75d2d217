"""Sideband control of a live WebRTC call: a WebRTC call made by the `call` client, and a
backend that joins it with `GET /v1/realtime?call_id=…` through OpenAI's Python SDK
(`client.realtime.connect(call_id=…)`), sees its events and drives it. Who may join, a call on
another node joined through this one, and how the call's end closes its sidebands.

The tool-call round trip: the browser's call asks a question that needs a tool, the
backend's sideband runs it and answers with `function_call_output` + `response.create`,
and the browser hears the answer.
"""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from server.tools.call_client import CallClient, mint_client_secret
from tests.test_tools_e2e import WEATHER
from tests.trust_cluster import API_KEY, mint, request
from tests.ws_client import SdkCall, ws_url

pytestmark = pytest.mark.slow


def say_text(text: str) -> list[dict]:
    return [
        {
            "type": "conversation.item.create",
            "item": {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": text}],
            },
        },
        {"type": "response.create"},
    ]


async def webrtc_call(server, api_key: str) -> CallClient:
    call = CallClient(server.url, await mint_client_secret(server.url, api_key))
    await call.connect()
    return call


async def handshake_status(server, query: str, token: str) -> tuple[int, dict, dict]:
    async with aiohttp.ClientSession() as http:
        try:
            ws = await http.ws_connect(
                f"{ws_url(server.url)}/v1/realtime?{query}",
                headers={"Authorization": f"Bearer {token}"},
            )
        except aiohttp.WSServerHandshakeError as exc:
            async with http.get(
                f"{server.url}/v1/realtime?{query}",
                headers={
                    "Authorization": f"Bearer {token}",
                    "Connection": "Upgrade",
                    "Upgrade": "websocket",
                    "Sec-WebSocket-Version": "13",
                    "Sec-WebSocket-Key": "MDEyMzQ1Njc4OWFiY2RlZg==",
                },
            ) as resp:
                assert resp.status == exc.status
                return resp.status, await resp.json(), dict(resp.headers)
        await ws.close()
        return 101, {}, {}


async def test_the_sideband_sees_the_call_and_drives_it(hark):
    call = await webrtc_call(hark, hark.api_key)
    side = SdkCall(hark.url, hark.api_key, call_id=call.call_id)
    try:
        await side.connect(microphone=False)
        joined = side.events[0].data["session"]
        assert joined["id"] == call.events[0].data["session"]["id"]
        # The sideband updates the session: both channels see it.
        mark_call, mark_side = len(call.events), len(side.events)
        await side.send(
            {
                "type": "session.update",
                "session": {"type": "realtime", "instructions": "Answer in five words."},
            }
        )
        for events in (
            await call.wait_for("session.updated", after=mark_call),
            await side.wait_for("session.updated", after=mark_side),
        ):
            assert events.data["session"]["instructions"] == "Answer in five words."
        # The sideband asks; the WebRTC side hears the answer; both see the whole response.
        mark_call, mark_side = len(call.events), len(side.events)
        for event in say_text("What is the capital of France?"):
            await side.send(event)
        done_side = await side.wait_for("response.done", after=mark_side, timeout=90)
        done_call = await call.wait_for("response.done", after=mark_call, timeout=30)
        assert done_side.data["response"]["id"] == done_call.data["response"]["id"]
        assert done_call.data["response"]["status"] == "completed"
        heard = call.recorder.audible_ms_between(call.events[mark_call].at, done_call.at)
        assert heard >= 300, heard  # spoken on the WebRTC track
        shared = {"response.created", "response.output_audio_transcript.delta", "response.done"}
        assert shared <= set(side.types()[mark_side:]) and shared <= set(call.types()[mark_call:])
        # A sideband's bad event is answered on the sideband only.
        mark_call, mark_side = len(call.events), len(side.events)
        await side.conn.send_raw('{"type": "no.such", "event_id": "side-1"}')
        error = await side.wait_for("error", after=mark_side)
        assert error.data["error"]["event_id"] == "side-1"
        await asyncio.sleep(0.3)
        assert "error" not in call.types()[mark_call:]
        # The sideband leaves; the call goes on.
        await side.close()
        await asyncio.sleep(0.5)
        mark_call = len(call.events)
        call.ask("Say hello.")
        done = await call.wait_for("response.done", after=mark_call, timeout=90)
        assert done.data["response"]["status"] == "completed"
    finally:
        await side.close()
        await call.hangup()


async def test_the_sideband_answers_the_calls_tool_call(hark):
    call = await webrtc_call(hark, hark.api_key)
    side = SdkCall(hark.url, hark.api_key, call_id=call.call_id)
    try:
        await side.connect(microphone=False)
        mark_side = len(side.events)
        await side.send(
            {
                "type": "session.update",
                "session": {"type": "realtime", "tools": [WEATHER], "tool_choice": "required"},
            }
        )
        await side.wait_for("session.updated", after=mark_side)
        # The browser asks; the model calls the tool; the backend sees the call.
        mark_call, mark_side = len(call.events), len(side.events)
        call.ask("What's the weather like in Paris?")
        asked = await side.wait_for("response.done", after=mark_side, timeout=90)
        calls = [i for i in asked.data["response"]["output"] if i["type"] == "function_call"]
        assert [c["name"] for c in calls] == ["get_weather"], asked.data
        json.loads(calls[0]["arguments"])
        seen = await call.wait_for("response.function_call_arguments.done", after=mark_call)
        assert seen.data["call_id"] == calls[0]["call_id"]  # the browser sees it too
        # The backend runs it and asks for the answer; the browser hears it.
        mark_call, mark_side = len(call.events), len(side.events)
        await side.send(
            {
                "type": "conversation.item.create",
                "item": {
                    "type": "function_call_output",
                    "call_id": calls[0]["call_id"],
                    "output": json.dumps({"city": "Paris", "sky": "sunny", "temp_c": 18}),
                },
            }
        )
        await side.send({"type": "response.create", "response": {"tool_choice": "none"}})
        added = await call.wait_for(
            "conversation.item.added",
            lambda d: d["item"]["type"] == "function_call_output",
            after=mark_call,
        )
        assert added.data["item"]["call_id"] == calls[0]["call_id"]
        done = await call.wait_for("response.done", after=mark_call, timeout=90)
        response = done.data["response"]
        assert response["status"] == "completed", response
        assert response["output"][0]["content"][0]["transcript"].strip()
        heard = call.recorder.audible_ms_between(call.events[mark_call].at, done.at)
        assert heard >= 300, heard  # spoken on the WebRTC track
        side_done = await side.wait_for("response.done", after=mark_side, timeout=30)
        assert side_done.data["response"]["id"] == response["id"]
    finally:
        await side.close()
        await call.hangup()


async def test_the_call_ending_closes_its_sidebands(hark):
    call = await webrtc_call(hark, hark.api_key)
    sides = [SdkCall(hark.url, hark.api_key, call_id=call.call_id) for _ in range(2)]
    # An operator (the admin key here) may join any call.
    sides.append(SdkCall(hark.url, hark.admin_key, call_id=call.call_id))
    try:
        for side in sides:
            await side.connect(microphone=False)
        await call.hangup()
        for side in sides:
            await asyncio.wait_for(side._tasks[0], 10)  # the reader ends: the socket closed
            assert side.close_code == 1000
            assert side.conn._connection.close_reason == "call ended: hangup"
    finally:
        for side in sides:
            await side.close()


async def test_who_may_join(hark):
    call = await webrtc_call(hark, hark.api_key)
    try:
        query = f"call_id={call.call_id}"
        status, body, _ = await handshake_status(hark, "call_id=rtc_nosuchcall", hark.api_key)
        assert (status, body["error"]["code"]) == (404, "call_not_found")
        # Another tenant's call is indistinguishable from an unknown one.
        status, body, _ = await handshake_status(hark, query, hark.other_api_key)
        assert (status, body["error"]["code"]) == (404, "call_not_found")
        # The call's own client secret (or any realtime secret) cannot join.
        secret = await mint_client_secret(hark.url, hark.api_key)
        status, body, _ = await handshake_status(hark, query, secret)
        assert (status, body["error"]["code"]) == (403, "api_key_required")
        status, body, _ = await handshake_status(hark, query, "sk-wrong")
        assert status == 401
        # The other tenant's own call is theirs to join.
        theirs = await webrtc_call(hark, hark.other_api_key)
        try:
            status, _, _ = await handshake_status(
                hark, f"call_id={theirs.call_id}", hark.other_api_key
            )
            assert status == 101
            status, _, _ = await handshake_status(hark, f"call_id={theirs.call_id}", hark.api_key)
            assert status == 404
        finally:
            await theirs.hangup()
        # An ended call is gone.
        status, _, _ = await handshake_status(hark, query, hark.api_key)
        assert status == 101
        await call.hangup()
        status, body, _ = await handshake_status(hark, query, hark.api_key)
        assert (status, body["error"]["code"]) == (404, "call_not_found")
    finally:
        await call.hangup()


async def test_a_call_on_another_node_is_joined_through_this_one(hark_cluster):
    """Node A relays a sideband for node B's call to B (signaling/forwarding.py); B checks
    the credentials, so another key's join is refused as B would refuse it."""
    a, b = hark_cluster.a, hark_cluster.b
    call = CallClient(b.url, await mint(b))
    await call.connect()
    try:
        await asyncio.sleep(0.5)  # the registry records the call in the shared state
        side = SdkCall(a.url, API_KEY, call_id=call.call_id)
        try:
            await side.connect(microphone=False)
            assert side.events[0].data["session"]["id"] == call.events[0].data["session"]["id"]
        finally:
            await side.close()
        status, body, _ = await handshake_status(a, f"call_id={call.call_id}", "sk-wrong")
        assert status == 401, body
    finally:
        await call.hangup()
    status, body, _ = await request(
        "GET",
        f"{a.url}/v1/realtime?call_id={call.call_id}",
        headers={"Authorization": f"Bearer {API_KEY}", "Upgrade": "websocket"},
    )
    assert status in (404, 426), body  # gone everywhere: no node claims it


async def test_an_idle_websocket_call_is_ended_with_a_reason(hark_cluster):
    """Node A ends calls after 3 s without appended audio or events."""
    node = hark_cluster.a
    side = SdkCall(node.url, API_KEY)
    try:
        await side.connect(microphone=False)
        error = await side.wait_for("error", timeout=15)
        assert error.data["error"]["code"] == "session_idle_timeout"
        await asyncio.wait_for(side._tasks[0], 10)
        assert side.close_code == 1000
        assert side.conn._connection.close_reason == "call ended: idle_timeout"
    finally:
        await side.close()
    print("idle:", json.dumps(side.types()))
