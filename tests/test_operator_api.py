"""The operator API on a real Hark with real calls: auth, the live stream, ending a call,
the browser's client stats, and Prometheus `/metrics` after real spoken turns."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import aiohttp
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from server.tools.call_client import CallClient, CallError, mint_client_secret
from tests.speech import silence, speak

pytestmark = pytest.mark.slow


def auth(hark) -> dict[str, str]:
    return {"Authorization": f"Bearer {hark.admin_key}"}


async def connect(hark, session: dict | None = None) -> CallClient:
    client = CallClient(hark.url, await mint_client_secret(hark.url, hark.api_key, session))
    await client.connect()
    return client


async def get_json(hark, path: str) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{hark.url}{path}", headers=auth(hark)) as resp:
            return resp.status, await resp.json()


async def sse(response: aiohttp.ClientResponse) -> AsyncIterator[dict]:
    async for raw in response.content:
        line = raw.decode().strip()
        if line.startswith("data: "):
            yield json.loads(line[6:])


async def test_operator_endpoints_need_operator_credentials(hark) -> None:
    secret = await mint_client_secret(hark.url, hark.api_key)
    async with aiohttp.ClientSession() as http:
        for method, path in (
            ("GET", "/v1/operator/calls"),
            ("GET", "/v1/operator/calls/rtc_x"),
            ("DELETE", "/v1/operator/calls/rtc_x"),
            ("GET", "/v1/operator/stream"),
            ("GET", "/metrics"),
        ):
            for headers, status in (
                ({}, 401),
                ({"Authorization": "Bearer nope"}, 401),
                # A realtime secret or an API key is known, but not an operator's.
                ({"Authorization": f"Bearer {secret}"}, 403),
                ({"Authorization": f"Bearer {hark.api_key}"}, 403),
            ):
                async with http.request(method, f"{hark.url}{path}", headers=headers) as resp:
                    body = await resp.json()
                    assert resp.status == status, (method, path, headers, body)
                    assert set(body["error"]) >= {"type", "code", "message"}
        async with http.get(f"{hark.url}/v1/operator/stream?token={secret}") as resp:
            assert resp.status == 403
        async with http.get(
            f"{hark.url}/v1/operator/calls/rtc_unknown", headers=auth(hark)
        ) as resp:
            assert resp.status == 404
            assert (await resp.json())["error"]["code"] == "call_not_found"
        async with http.delete(
            f"{hark.url}/v1/operator/calls/rtc_unknown", headers=auth(hark)
        ) as resp:
            assert resp.status == 404


async def test_stream_shows_calls_come_and_go_and_operator_ends_a_call(hark) -> None:
    async with aiohttp.ClientSession() as http:
        stream = await http.get(
            f"{hark.url}/v1/operator/stream?token={hark.admin_key}",
            timeout=aiohttp.ClientTimeout(total=120),
        )
        assert stream.status == 200
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        messages = sse(stream)
        first = await anext(messages)
        assert first["type"] == "snapshot" and isinstance(first["calls"], list)

        client = await connect(hark)
        try:

            async def until(predicate) -> dict:
                async for message in messages:
                    if predicate(message):
                        return message
                raise AssertionError("stream ended")

            started = await asyncio.wait_for(
                until(lambda m: m["type"] == "call.started"), timeout=20
            )
            assert started["call"]["id"] == client.call_id
            updated = await asyncio.wait_for(
                until(
                    lambda m: (
                        m["type"] == "calls.updated"
                        and any(
                            c["id"] == client.call_id and c["quality"].get("mos")
                            for c in m["calls"]
                        )
                    )
                ),
                timeout=20,
            )
            row = next(c for c in updated["calls"] if c["id"] == client.call_id)
            assert row["quality"]["mos"] is not None and row["grade"] in ("good", "fair", "poor")

            async with http.delete(
                f"{hark.url}/v1/operator/calls/{client.call_id}", headers=auth(hark)
            ) as resp:
                assert resp.status == 204
            ended = await asyncio.wait_for(until(lambda m: m["type"] == "call.ended"), timeout=20)
            assert ended == {"type": "call.ended", "call_id": client.call_id, "reason": "operator"}
            # Gone from the live list, but its timeline can still be read.
            status, listing = await get_json(hark, "/v1/operator/calls")
            assert client.call_id not in [c["id"] for c in listing["data"]]
            status, timeline = await get_json(hark, f"/v1/operator/calls/{client.call_id}")
            assert status == 200 and timeline["end_reason"] == "operator"
            assert timeline["samples"], timeline
            # Ending it again is fine.
            async with http.delete(
                f"{hark.url}/v1/operator/calls/{client.call_id}", headers=auth(hark)
            ) as resp:
                assert resp.status == 204
        finally:
            stream.close()
            await client.close()


async def test_client_stats_are_kept_and_bad_ones_refused(hark) -> None:
    client = await connect(hark)
    try:
        stats = {"rtt_ms": 42.5, "jitter_buffer_ms": 61.0, "concealed_pct": 1.5, "loss_pct": 0.4}
        client.send({"type": "hark.client_stats", "stats": stats})
        client.send({"type": "hark.client_stats", "event_id": "e1", "stats": {"rtt_ms": "x"}})
        client.send({"type": "hark.client_stats", "event_id": "e2", "stats": {"evil": 1}})
        client.send({"type": "hark.client_stats", "event_id": "e3", "stats": [1, 2]})
        for event_id in ("e1", "e2", "e3"):
            error = await client.wait_for(
                "error", lambda d, e=event_id: d["error"]["event_id"] == e, timeout=10
            )
            assert error.data["error"]["code"] == "invalid_value"
        status, timeline = await get_json(hark, f"/v1/operator/calls/{client.call_id}")
        assert status == 200
        kept = timeline["client_stats"]
        assert len(kept) == 1 and {k: kept[0][k] for k in stats} == stats
        assert timeline["client"]["jitter_buffer_ms"] == 61.0
        assert timeline["error_counts"] == {"invalid_value": 3}
    finally:
        await client.hangup()


def utterance(text: str, lead_ms: int = 300, tail_ms: int = 1000) -> np.ndarray:
    return np.concatenate([silence(lead_ms, 48000), speak(text, 48000), silence(tail_ms, 48000)])


def families(text: str) -> dict[str, dict[tuple, float]]:
    """{family: {(sample name, labels...): value}} from the exposition text."""
    parsed: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, *sorted(sample.labels.items()))
            parsed.setdefault(family.name, {})[key] = sample.value
    return parsed


def value(parsed: dict, family: str, name: str, **labels: str) -> float:
    return parsed[family].get((name, *sorted(labels.items())), 0.0)


async def test_metrics_after_real_turns_with_a_barge_in(hark) -> None:
    story = utterance("Tell me a long story about a brave dragon and a knight.")
    interruption = utterance("Stop. What is two plus two?", lead_ms=0, tail_ms=1500)
    client = await connect(
        hark,
        {"instructions": "You are a storyteller. Always answer with three long sentences."},
    )
    try:
        await client.say(story, 48000)
        await client.wait_for("output_audio_buffer.started", timeout=90)
        await asyncio.sleep(0.5)
        mark = len(client.events)
        await client.say(interruption, 48000)
        await client.wait_for(
            "response.done", lambda d: d["response"]["status"] == "cancelled", timeout=20
        )
        await client.wait_for(
            "response.done",
            lambda d: d["response"]["status"] == "completed",
            after=mark,
            timeout=90,
        )
        await client.wait_for("hark.metrics", after=mark, timeout=10)
        client.send({"type": "no.such.event"})  # one error event, counted by type
        await client.wait_for("error", after=mark, timeout=10)
        await asyncio.sleep(2.5)  # at least one more quality sample
    finally:
        with contextlib.suppress(CallError):
            await client.hangup()
    await asyncio.sleep(0.5)

    async with aiohttp.ClientSession() as http:
        async with http.get(f"{hark.url}/metrics", headers=auth(hark)) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/plain")
            text = await resp.text()
    parsed = families(text)
    print("\n" + "\n".join(line for line in text.splitlines() if not line.startswith("#"))[:4000])

    assert "hark_calls_live" in parsed
    assert value(parsed, "hark_calls_started", "hark_calls_started_total") >= 1
    assert value(parsed, "hark_calls_ended", "hark_calls_ended_total", reason="hangup") >= 1
    assert value(parsed, "hark_turns", "hark_turns_total", status="completed") >= 1
    assert value(parsed, "hark_turns", "hark_turns_total", status="cancelled") >= 1
    assert value(parsed, "hark_barge_ins", "hark_barge_ins_total") >= 1
    assert value(parsed, "hark_errors", "hark_errors_total", type="unknown_event") >= 1
    for histogram in (
        "hark_voice_to_voice_seconds",
        "hark_stt_seconds",
        "hark_llm_first_token_seconds",
        "hark_tts_first_audio_seconds",
        "hark_barge_in_stop_seconds",
        "hark_rtt_seconds",
        "hark_mos",
    ):
        assert value(parsed, histogram, f"{histogram}_count") >= 1, histogram
        assert value(parsed, histogram, f"{histogram}_bucket", le="+Inf") >= 1, histogram
    for direction in ("in", "out"):
        for histogram in ("hark_packet_loss_ratio", "hark_jitter_seconds"):
            count = value(parsed, histogram, f"{histogram}_count", direction=direction)
            assert count >= 1, (histogram, direction)

    status, timeline = await get_json(hark, f"/v1/operator/calls/{client.call_id}")
    assert status == 200
    turns = timeline["turn_list"]
    assert [t["status"] for t in turns][:2] == ["cancelled", "completed"], turns
    assert turns[0]["barge_in_stop_ms"] is not None and turns[0]["barge_in_stop_ms"] >= 0
    assert all(t["voice_to_voice_ms"] and t["stt_ms"] for t in turns), turns
    assert timeline["barge_ins"] == 1 and timeline["turns"] == len(turns)
