"""Client events over a real data channel: updates, refusals, truncation, cancellation."""

from __future__ import annotations

import asyncio

import pytest

from server.tools.call_client import CallClient, mint_client_secret

pytestmark = pytest.mark.slow


async def connect(hark) -> CallClient:
    client = CallClient(hark.url, await mint_client_secret(hark.url, hark.api_key))
    await client.connect()
    return client


async def ask(client: CallClient, text: str):
    """Type a question and wait for its response to finish."""
    mark = len(client.events)
    client.ask(text)
    return await client.wait_for("response.done", after=mark, timeout=90)


async def expect_error(client: CallClient, raw: str, code: str, event_id: str | None = None):
    mark = len(client.events)
    client._channel.send(raw)
    error = await client.wait_for("error", after=mark, timeout=10)
    assert error.data["error"]["code"] == code, error.data
    assert error.data["error"]["message"]
    if event_id is not None:
        assert error.data["error"]["event_id"] == event_id
    return error


async def test_session_update_is_answered_with_the_full_session(hark):
    client = await connect(hark)
    try:
        created = client.events[0].data["session"]
        # Hark's default is semantic_vad (HARK_TURN_DETECTION); clients may switch.
        assert created["audio"]["input"]["turn_detection"]["type"] == "semantic_vad"
        assert created["audio"]["input"]["turn_detection"]["eagerness"] == "auto"
        mark = len(client.events)
        client.send(
            {
                "type": "session.update",
                "session": {
                    "type": "realtime",
                    "instructions": "Speak like a pirate.",
                    "audio": {
                        "input": {
                            "turn_detection": {"type": "server_vad", "silence_duration_ms": 700}
                        }
                    },
                },
            }
        )
        updated = (await client.wait_for("session.updated", after=mark)).data["session"]
        assert updated["instructions"] == "Speak like a pirate."
        assert updated["audio"]["input"]["turn_detection"]["silence_duration_ms"] == 700
        assert updated["id"] == created["id"]
    finally:
        await client.hangup()


async def test_bad_events_get_error_events_and_the_call_survives(hark):
    client = await connect(hark)
    try:
        await expect_error(client, "{not json", "invalid_json")
        await expect_error(client, "[1, 2]", "invalid_event")
        await expect_error(
            client, '{"type": "no.such.event", "event_id": "e1"}', "unknown_event", "e1"
        )
        await expect_error(client, '{"type": 42}', "invalid_value")
        await expect_error(
            client,
            '{"type": "session.update", "session": {"audio": '
            '{"input": {"turn_detection": {"threshold": 2}}}}, "event_id": "e2"}',
            "invalid_value",
            "e2",
        )
        await expect_error(client, '{"type": "response.cancel"}', "response_cancel_not_active")
        await expect_error(
            client,
            '{"type": "conversation.item.truncate", "item_id": "nope", '
            '"content_index": 0, "audio_end_ms": 10}',
            "item_not_found",
        )
        await expect_error(
            client,
            '{"type": "conversation.item.create", "item": '
            '{"type": "message", "role": "robot", "content": []}}',
            "invalid_value",
        )
        await expect_error(
            client,
            '{"type": "input_audio_buffer.append", "audio": "AAAA"}',
            "unsupported_over_webrtc",
        )
        # 200 KB: under HARK_MAX_EVENT_BYTES (1 MiB, for 15 s appends over a WebSocket),
        # so it is read and answered. aiortc takes data channel messages up to 256 KiB, so
        # the cap itself is tested over the WebSocket (tests/test_websocket_hostile_e2e.py).
        await expect_error(client, '{"type": "x", "pad": "' + "a" * 200_000 + '"}', "unknown_event")
        # Still a working call: a typed question gets a spoken answer.
        done = await ask(client, "What is the capital of France?")
        assert done.data["response"]["status"] == "completed"
    finally:
        await client.hangup()


async def test_cancel_truncate_and_a_second_response(hark):
    client = await connect(hark)
    try:
        client.ask("Tell me about the history of Rome in three sentences.")
        await client.wait_for("output_audio_buffer.started", timeout=90)
        mark = len(client.events)
        client.send({"type": "response.create"})
        busy = await client.wait_for("error", after=mark)
        assert busy.data["error"]["code"] == "conversation_already_has_active_response"

        await asyncio.sleep(0.5)
        client.send({"type": "response.cancel"})
        done = await client.wait_for(
            "response.done", lambda d: d["response"]["status"] == "cancelled", timeout=10
        )
        assert done.data["response"]["status_details"]["reason"] == "client_cancelled"
        assert "output_audio_buffer.cleared" in client.types()[mark:]
        item = done.data["response"]["output"][0]
        heard = item["content"][0]["transcript"]

        # Truncate the finished item further back: it keeps a prefix of what was heard,
        # and nothing at all at 0 ms.
        previous = heard
        for audio_end_ms in (300, 0):
            mark = len(client.events)
            client.send(
                {
                    "type": "conversation.item.truncate",
                    "item_id": item["id"],
                    "content_index": 0,
                    "audio_end_ms": audio_end_ms,
                }
            )
            truncated = await client.wait_for("conversation.item.truncated", after=mark)
            assert truncated.data["audio_end_ms"] == audio_end_ms
            client.send({"type": "conversation.item.retrieve", "item_id": item["id"]})
            stored = await client.wait_for("conversation.item.retrieved", after=mark)
            text = stored.data["item"]["content"][0]["transcript"]
            assert previous.startswith(text), (previous, text)
            previous = text
        assert previous == ""

        # Not stuck: the next request is answered.
        done = await ask(client, "Say hello.")
        assert done.data["response"]["status"] == "completed"
    finally:
        await client.hangup()
