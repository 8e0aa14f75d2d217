"""Function calling, written and out-of-band replies, transcription sessions and refusals,
end to end over real WebRTC against a real server with the packaged models.

The `call` client speaks (Piper speech on its microphone track) and answers tool calls
as an app would: `function_call_output`, then `response.create`.
"""

from __future__ import annotations

import asyncio
import json

import aiohttp
import jsonschema_rs
import numpy as np
import pytest

from server.tools.call_client import CallClient, function_calls, mint_client_secret
from tests.speech import silence, speak

pytestmark = pytest.mark.slow

WEATHER_PARAMETERS = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "description": "The city"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city", "unit"],
}
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Get the current weather for a city.",
    "parameters": WEATHER_PARAMETERS,
}


async def connect(hark, session: dict | None = None) -> CallClient:
    client = CallClient(hark.url, await mint_client_secret(hark.url, hark.api_key, session))
    await client.connect()
    return client


def utterance(*parts: str, gap_ms: int = 0) -> np.ndarray:
    pieces = [silence(300, 48000)]
    for index, text in enumerate(parts):
        if index:
            pieces.append(silence(gap_ms, 48000))
        pieces.append(speak(text, 48000))
    pieces.append(silence(1200, 48000))
    return np.concatenate(pieces)


def events_of(client: CallClient, kind: str, response_id: str | None = None, after: int = 0):
    return [
        e.data
        for e in client.events[after:]
        if e.type == kind and (response_id is None or e.data.get("response_id") == response_id)
    ]


async def expect_error(client: CallClient, event: dict, code: str, param: str) -> dict:
    mark = len(client.events)
    client.send(event)
    error = (await client.wait_for("error", after=mark, timeout=10)).data["error"]
    assert (error["code"], error["param"]) == (code, param), error
    assert error["message"]
    return error


async def test_a_spoken_question_a_required_call_its_output_and_a_spoken_answer(hark):
    question = utterance("What's the weather like in Paris?")
    client = await connect(hark, {"tools": [WEATHER], "tool_choice": "required"})
    try:
        created = client.events[0].data["session"]
        assert created["tools"] == [WEATHER] and created["tool_choice"] == "required"
        await client.say(question, 48000)
        arguments_done = await client.wait_for("response.function_call_arguments.done", timeout=90)
        call = arguments_done.data
        assert call["name"] == "get_weather" and call["call_id"]
        jsonschema_rs.validate(WEATHER_PARAMETERS, json.loads(call["arguments"]))
        done = await client.wait_for("response.done", timeout=30)
        response = done.data["response"]
        assert response["status"] == "completed"
        calls = function_calls(done)
        assert [c["call_id"] for c in calls] == [call["call_id"]]
        assert calls[0]["arguments"] == call["arguments"] and calls[0]["status"] == "completed"
        deltas = events_of(client, "response.function_call_arguments.delta", response["id"])
        assert "".join(d["delta"] for d in deltas) == call["arguments"]
        # A call is not spoken, and nothing answers it until the app sends its output.
        assert not events_of(client, "output_audio_buffer.started", response["id"])
        mark = len(client.events)
        await asyncio.sleep(2.0)
        assert "response.created" not in client.types()[mark:]

        # The app runs its tool and asks for the answer (auto: answer from the output).
        client.answer_tool_calls(
            done,
            lambda c: json.dumps({"city": "Paris", "sky": "sunny", "temp_c": 18}),
            {"tool_choice": "auto"},
        )
        added = await client.wait_for(
            "conversation.item.added",
            lambda d: d["item"]["type"] == "function_call_output",
            after=mark,
        )
        assert added.data["item"]["call_id"] == call["call_id"]
        answer = await client.wait_for("response.done", after=mark, timeout=90)
        spoken = answer.data["response"]
        assert spoken["status"] == "completed"
        message = spoken["output"][0]
        assert message["type"] == "message" and message["content"][0]["type"] == "output_audio"
        assert message["content"][0]["transcript"].strip()
        started = events_of(client, "output_audio_buffer.started", spoken["id"], mark)
        assert started, "the answer was not spoken"
        await asyncio.sleep(0.3)
        heard_from = client.events[mark].at
        assert client.recorder.first_audible_after(heard_from) is not None
    finally:
        await client.hangup()


async def test_an_out_of_band_written_reply_beside_a_spoken_one(hark):
    client = await connect(hark)
    try:
        mark = len(client.events)
        client.ask("Tell me about the history of Rome in three sentences.")
        await client.wait_for("output_audio_buffer.started", after=mark, timeout=90)
        # While that reply is spoken: a written, out-of-band summary with its own context.
        client.respond(
            {
                "conversation": "none",
                "output_modalities": ["text"],
                "metadata": {"purpose": "topic"},
                "instructions": "Name the topic in a few words.",
                "max_output_tokens": 12,
                "input": [
                    {
                        "type": "message",
                        "role": "user",
                        "content": [{"type": "input_text", "text": "We talked about Rome."}],
                    }
                ],
            }
        )
        oob = await client.wait_for(
            "response.done",
            lambda d: d["response"]["metadata"] == {"purpose": "topic"},
            after=mark,
            timeout=90,
        )
        response = oob.data["response"]
        assert response["status"] in ("completed", "incomplete")
        assert response["conversation_id"] is None and response["output_modalities"] == ["text"]
        created = next(
            e for e in events_of(client, "response.created", after=mark)
            if e["response"]["id"] == response["id"]
        )  # fmt: skip
        assert created["response"]["metadata"] == {"purpose": "topic"}
        text = "".join(
            d["delta"] for d in events_of(client, "response.output_text.delta", response["id"])
        )
        assert text.strip() and response["output"][0]["content"][0] == {
            "type": "output_text",
            "text": text,
        }
        assert len(events_of(client, "response.output_text.delta", response["id"])) <= 12
        assert not events_of(client, "output_audio_buffer.started", response["id"])
        out_ids = {item["id"] for item in response["output"]}
        added = {e["item"]["id"] for e in events_of(client, "conversation.item.added", after=mark)}
        assert not out_ids & added  # out of band: not in the conversation
        # The spoken reply went on and finished.
        spoken = await client.wait_for(
            "response.done",
            lambda d: d["response"]["conversation_id"] is not None,
            after=mark,
            timeout=90,
        )
        assert spoken.data["response"]["status"] == "completed"
        assert spoken.data["response"]["metadata"] is None
    finally:
        await client.hangup()


async def test_a_written_session_answers_in_text_only(hark):
    client = await connect(hark, {"output_modalities": ["text"]})
    try:
        mark = len(client.events)
        client.ask("What is the capital of France?")
        done = await client.wait_for("response.done", after=mark, timeout=90)
        content = done.data["response"]["output"][0]["content"][0]
        assert content["type"] == "output_text" and content["text"].strip()
        assert not any(t.startswith("output_audio_buffer") for t in client.types()[mark:])
        assert "response.output_audio_transcript.delta" not in client.types()[mark:]
    finally:
        await client.hangup()


async def test_a_transcription_session_transcribes_and_never_responds(hark):
    # A pause mid-sentence gives a partial transcript before the turn ends.
    speech = utterance("What is the capital", "of France?", gap_ms=500)
    client = await connect(hark, {"type": "transcription"})
    try:
        session = client.events[0].data["session"]
        assert session["type"] == "transcription"
        assert session["object"] == "realtime.transcription_session"
        await client.say(speech, 48000)
        completed = await client.wait_for(
            "conversation.item.input_audio_transcription.completed", timeout=60
        )
        item_id = completed.data["item_id"]
        assert "capital" in completed.data["transcript"].lower()
        deltas = [
            e for e in client.events
            if e.type == "conversation.item.input_audio_transcription.delta"
        ]  # fmt: skip
        assert deltas and all(e.data["item_id"] == item_id for e in deltas)
        assert all(e.at <= completed.at for e in deltas)
        await asyncio.sleep(2.0)
        assert not any(t.startswith("response.") for t in client.types())
        await expect_error(client, {"type": "response.create"}, "invalid_request", "type")
        await expect_error(
            client,
            {"type": "session.update", "session": {"type": "realtime"}},
            "invalid_value",
            "session.type",
        )
    finally:
        await client.hangup()


async def test_bad_tools_calls_and_content_get_error_events_and_the_call_lives_on(hark):
    client = await connect(hark)
    try:
        bad_tool = {**WEATHER, "parameters": {"type": "object", "properties": {"city": 5}}}
        await expect_error(
            client,
            {"type": "session.update", "session": {"tools": [bad_tool]}},
            "invalid_value",
            "session.tools[0].parameters.properties.city",
        )
        await expect_error(
            client,
            {
                "type": "session.update",
                "session": {"tools": [{"type": "mcp", "server_label": "x"}]},
            },
            "unsupported_tool_type",
            "session.tools[0].type",
        )
        await expect_error(
            client,
            {
                "type": "conversation.item.create",
                "item": {"type": "function_call_output", "call_id": "call_nope", "output": "{}"},
            },
            "unknown_call_id",
            "item.call_id",
        )
        image = {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo="}
        await expect_error(
            client,
            {
                "type": "conversation.item.create",
                "item": {"type": "message", "role": "user", "content": [image]},
            },
            "unsupported_content",
            "item.content[0].type",
        )
        await expect_error(
            client,
            {"type": "response.create", "response": {"output_modalities": ["video"]}},
            "unsupported_modality",
            "response.output_modalities[0]",
        )
        # A call the client itself adds is accepted, and its output then too.
        mark = len(client.events)
        client.send(
            {
                "type": "conversation.item.create",
                "item": {
                    "type": "function_call",
                    "call_id": "call_own",
                    "name": "get_weather",
                    "arguments": "{}",
                },
            }
        )
        client.send(
            {
                "type": "conversation.item.create",
                "item": {"type": "function_call_output", "call_id": "call_own", "output": "sunny"},
            }
        )
        outputs = [
            e for e in (await asyncio.sleep(0.5), client.events[mark:])[1]
            if e.type == "conversation.item.added"
        ]  # fmt: skip
        assert [e.data["item"]["type"] for e in outputs] == [
            "function_call",
            "function_call_output",
        ]
        assert "error" not in client.types()[mark:]
        # Still a working call: a typed question gets a spoken answer.
        mark = len(client.events)
        client.ask("What is the capital of France?")
        done = await client.wait_for("response.done", after=mark, timeout=90)
        assert done.data["response"]["status"] == "completed"
    finally:
        await client.hangup()


async def test_hangup_by_post_ends_the_call(hark):
    client = await connect(hark)
    try:
        async with aiohttp.ClientSession() as http:
            headers = {"Authorization": f"Bearer {client.token}"}
            async with http.post(f"{hark.url}{client.call_path}/hangup", headers=headers) as resp:
                assert resp.status == 204
            unknown = f"{hark.url}/v1/realtime/calls/rtc_nope/hangup"
            async with http.post(unknown, headers=headers) as resp:
                assert resp.status == 404
                assert (await resp.json())["error"]["code"] == "call_not_found"
            operator = {"Authorization": f"Bearer {hark.admin_key}"}
            url = f"{hark.url}/v1/operator/calls/{client.call_id}"
            async with http.get(url, headers=operator) as resp:
                call = await resp.json()
            assert call["state"] == "ended" and call["end_reason"] == "hangup", call
    finally:
        await client.close()
