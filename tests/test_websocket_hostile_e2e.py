"""GET /v1/realtime with a raw aiohttp WebSocket client: browser subprotocol auth, refusals
before the upgrade, and bad input on an open socket (malformed JSON, binary frames,
oversize frames, wrong audio formats, bad base64, an append flood): each gets an `error`
event, the connection stays up, and afterwards nothing is left behind on the server."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
import time
from typing import Any

import aiohttp
import pytest

from server.tools.call_client import mint_client_secret
from tests.server_process import ROOT

pytestmark = pytest.mark.slow

PROBE = {"type": "conversation.item.retrieve", "item_id": "none"}


def ws_url(server, query: str = "model=hark") -> str:
    return f"{server.url.replace('http://', 'ws://')}/v1/realtime?{query}"


async def diagnostics(server) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http:
        async with http.get(
            f"{server.url}/hark/diagnostics",
            headers={"Authorization": f"Bearer {server.admin_key}"},
        ) as resp:
            assert resp.status == 200
            return await resp.json()


async def refused(url: str, **kwargs: Any) -> tuple[int, dict[str, Any], dict[str, str]]:
    """A handshake the server must refuse: (status, OpenAI error body, headers)."""
    async with aiohttp.ClientSession() as http:
        async with http.get(
            url.replace("ws://", "http://"),
            headers={
                "Connection": "Upgrade",
                "Upgrade": "websocket",
                "Sec-WebSocket-Version": "13",
                "Sec-WebSocket-Key": base64.b64encode(b"0123456789abcdef").decode(),
                **kwargs.pop("headers", {}),
            },
            **kwargs,
        ) as resp:
            assert resp.status != 101
            return resp.status, await resp.json(), dict(resp.headers)


async def answer_to(ws: aiohttp.ClientWebSocketResponse, tag: str) -> dict[str, Any]:
    """Skip events until the `error` echoing `tag`: proof the session still listens."""
    while True:
        message = await asyncio.wait_for(ws.receive(), 30)
        assert message.type == aiohttp.WSMsgType.TEXT, message
        event = json.loads(message.data)
        if event["type"] == "error" and event["error"].get("event_id") == tag:
            return event


async def error_for(ws: aiohttp.ClientWebSocketResponse, raw: str | bytes) -> dict[str, Any]:
    if isinstance(raw, bytes):
        await ws.send_bytes(raw)
    else:
        await ws.send_str(raw)
    while True:
        event = json.loads((await asyncio.wait_for(ws.receive(), 30)).data)
        if event["type"] == "error":
            return event["error"]


async def settled(server, before: dict[str, Any], timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        now = await diagnostics(server)
        if now["calls"] == 0 and now["tasks"] <= before["tasks"] + 3:
            return now
        if time.monotonic() > deadline:
            return now
        await asyncio.sleep(0.5)


async def test_browser_subprotocol_auth_and_refusals_before_the_upgrade(hark):
    async with aiohttp.ClientSession() as http:
        # A browser: the key rides in a subprotocol; the answer names only `realtime`.
        protocols = (
            "realtime",
            f"openai-insecure-api-key.{hark.api_key}",
            "openai-beta.realtime-v1",
        )
        async with http.ws_connect(ws_url(hark), protocols=protocols) as ws:
            assert ws.protocol == "realtime"
            created = json.loads((await ws.receive()).data)
            assert created["type"] == "session.created"
        # An ek_ secret works once, like POST /v1/realtime/calls.
        secret = await mint_client_secret(hark.url, hark.api_key)
        auth = {"Authorization": f"Bearer {secret}"}
        async with http.ws_connect(ws_url(hark), headers=auth) as ws:
            assert json.loads((await ws.receive()).data)["type"] == "session.created"
    status, body, _ = await refused(ws_url(hark), headers=auth)
    assert (status, body["error"]["code"]) == (401, "token_already_used")
    cases = [
        ({}, 401, "missing_authorization"),
        ({"Authorization": "Bearer sk-wrong"}, 401, "invalid_api_key"),
        ({"Sec-WebSocket-Protocol": "realtime, openai-insecure-api-key.sk-wrong"}, 401, None),
    ]
    for headers, status_wanted, code in cases:
        status, body, _ = await refused(ws_url(hark), headers=headers)
        assert status == status_wanted, body
        assert body["error"]["message"] and (code is None or body["error"]["code"] == code)
    # Not an upgrade at all: 426 with the OpenAI body.
    async with aiohttp.ClientSession() as http:
        async with http.get(
            ws_url(hark).replace("ws://", "http://"),
            headers={"Authorization": f"Bearer {hark.api_key}"},
        ) as resp:
            assert resp.status == 426
            assert (await resp.json())["error"]["code"] == "websocket_upgrade_required"
    status, body, _ = await refused(
        ws_url(hark, "intent=nonsense"), headers={"Authorization": f"Bearer {hark.api_key}"}
    )
    assert status == 400 and body["error"]["param"] == "intent"


async def test_bad_frames_get_error_events_and_the_call_survives(hark):
    before = await diagnostics(hark)
    auth = {"Authorization": f"Bearer {hark.api_key}"}
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(ws_url(hark), headers=auth) as ws:
            assert json.loads((await ws.receive()).data)["type"] == "session.created"
            append = {"type": "input_audio_buffer.append"}
            cases: list[tuple[str | bytes, str, str | None]] = [
                ("{not json", "invalid_json", None),
                ("[1, 2]", "invalid_event", None),
                (b"\x00\x01binary", "invalid_event", None),
                (b'{"type": "response.cancel"}', "invalid_event", None),  # JSON, but binary
                (json.dumps({"type": 5}), "invalid_value", "type"),
                (json.dumps({**append, "audio": 5}), "invalid_value", "audio"),
                (json.dumps({**append, "audio": "%%%"}), "invalid_audio", "audio"),
                (json.dumps({**append, "audio": "AAAA"}), "invalid_audio", "audio"),  # 3 bytes
                (
                    json.dumps(
                        {
                            "type": "session.update",
                            "session": {"audio": {"input": {"format": {"type": "audio/opus"}}}},
                        }
                    ),
                    "invalid_value",
                    "session.audio.input.format.type",
                ),
                (
                    json.dumps(
                        {
                            "type": "session.update",
                            "session": {
                                "audio": {"output": {"format": {"type": "audio/pcm", "rate": 5}}}
                            },
                        }
                    ),
                    "invalid_value",
                    "session.audio.output.format.rate",
                ),
                # Over HARK_MAX_EVENT_BYTES (1 MiB) but under the hard frame cap (4x).
                (json.dumps({"type": "x", "pad": "a" * 1_200_000}), "message_too_large", None),
            ]
            for raw, code, param in cases:
                error = await error_for(ws, raw)
                assert (error["code"], error["param"]) == (code, param), (raw[:80], error)
            # An append of 15 s of 24 kHz audio fits in one event.
            fifteen = base64.b64encode(b"\0\0" * 24000 * 15).decode()
            await ws.send_str(json.dumps({**append, "audio": fifteen}))
            await ws.send_str(json.dumps({**PROBE, "event_id": "after-15s"}))
            await answer_to(ws, "after-15s")
            # A flood: 40 s of audio at once. The allowance (20 s ahead of the clock, less
            # the 15 s just sent) takes a few; the rest are refused, the socket stays up.
            second = base64.b64encode(b"\0\0" * 24000).decode()
            for _ in range(40):
                await ws.send_str(json.dumps({**append, "audio": second}))
            await ws.send_str(json.dumps({**PROBE, "event_id": "after-flood"}))
            refusals = 0
            while True:
                event = json.loads((await asyncio.wait_for(ws.receive(), 30)).data)
                if event["type"] != "error":
                    continue
                if event["error"]["event_id"] == "after-flood":
                    break
                assert event["error"]["code"] == "input_audio_rate_exceeded"
                refusals += 1
            assert 30 <= refusals < 40
            # Still a working call: a typed question gets a spoken answer.
            await ws.send_str(
                json.dumps(
                    {
                        "type": "conversation.item.create",
                        "item": {
                            "type": "message",
                            "role": "user",
                            "content": [{"type": "input_text", "text": "Say hello."}],
                        },
                    }
                )
            )
            await ws.send_str(json.dumps({"type": "response.create"}))
            audio = 0
            while True:
                event = json.loads((await asyncio.wait_for(ws.receive(), 90)).data)
                if event["type"] == "response.output_audio.delta":
                    audio += len(base64.b64decode(event["delta"]))
                if event["type"] == "response.done":
                    assert event["response"]["status"] == "completed"
                    break
            assert audio > 24000 * 2 * 0.3  # at least 0.3 s of 24 kHz PCM16
            # Past the hard cap the server closes with 1009 (message too big), and only
            # this connection.
            try:
                await ws.send_str("x" * (4 * 1024 * 1024 + 10))
                cut_while_sending = False
            except ConnectionError:  # the server closed before all 4 MiB were written
                cut_while_sending = True
            while True:  # the answer's last events (hark.metrics), then the close
                message = await asyncio.wait_for(ws.receive(), 30)
                if message.type != aiohttp.WSMsgType.TEXT:
                    break
            closed = (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
            if cut_while_sending:
                assert message.type in (*closed, aiohttp.WSMsgType.ERROR), message
            else:
                assert message.type in closed, message
                # 1009 (message too big), or 1006 when the server's close overtook the
                # rest of our 4 MiB and the TCP reset lost the close frame (seen under load).
                assert ws.close_code in (1009, 1006)
    after = await settled(hark, before)
    assert after["calls"] == 0, after
    assert after["tasks"] <= before["tasks"] + 3, (before, after)
    assert after["open_fds"] <= before["open_fds"] + 5, (before, after)


async def test_websocket_calls_leave_nothing_behind(hark):
    """Forty calls opened and closed, ten whose client process is killed mid-call: the
    node's calls, tasks and fds come back to where they were."""
    auth = {"Authorization": f"Bearer {hark.api_key}"}
    async with aiohttp.ClientSession() as http:  # warm up lazily created state
        async with http.ws_connect(ws_url(hark), headers=auth) as ws:
            await ws.receive()
    before = await settled(hark, await diagnostics(hark))

    async def one() -> bool:
        async with aiohttp.ClientSession() as http:
            async with http.ws_connect(ws_url(hark), headers=auth) as ws:
                created = json.loads((await ws.receive()).data)
                second = base64.b64encode(b"\0\0" * 24000).decode()
                await ws.send_str(
                    json.dumps({"type": "input_audio_buffer.append", "audio": second})
                )
                return created["type"] == "session.created"

    opened = 0
    for _ in range(4):
        opened += sum(await asyncio.gather(*(one() for _ in range(10))))
        # A closed socket's call ends a few ms after the client has moved on; the node's
        # limit (16 calls) counts it until then.
        await settled(hark, before)
    killed = await asyncio.create_subprocess_exec(
        *(sys.executable, "-c", KILLED_CLIENTS, ws_url(hark), hark.api_key),
        cwd=ROOT,
        stdout=subprocess.PIPE,
    )
    try:
        assert killed.stdout is not None
        line = await asyncio.wait_for(killed.stdout.readline(), 60)
        during = await diagnostics(hark)
    finally:
        killed.kill()  # SIGKILL: no close frame
        await killed.wait()
    after = await settled(hark, before)
    figures = {"before": before, "during": during, "after": after, "killed": line.decode()}
    print("websocket leak check:", json.dumps(figures))
    assert opened == 40 and line.startswith(b"open 10"), figures
    assert during["calls"] >= 10, figures
    assert after["calls"] == 0, figures
    assert after["tasks"] <= before["tasks"] + 3, figures
    assert after["open_fds"] <= before["open_fds"] + 5, figures
    assert (after["rss_kb"] - before["rss_kb"]) / 1024 < 100, figures


KILLED_CLIENTS = """
import asyncio, json, sys, aiohttp
async def main(url, key):
    http = aiohttp.ClientSession()
    sockets = [await http.ws_connect(url, headers={"Authorization": "Bearer " + key})
               for _ in range(10)]
    for ws in sockets:
        await ws.receive()
    print("open", len(sockets), flush=True)
    await asyncio.sleep(3600)
asyncio.run(main(sys.argv[1], sys.argv[2]))
"""
