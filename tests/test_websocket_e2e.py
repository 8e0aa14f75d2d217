"""The WebSocket transport with OpenAI's own Python SDK (`client.realtime.connect()`) against
a real server: spoken questions appended as base64 at real-time pace get spoken answers in
`response.output_audio.delta`, barge-in over a WebSocket reply, truncation after partial
playback, manual turns in G.711.

Kept apart from the raw-socket checks (tests/test_websocket_hostile_e2e.py) and the
sideband (tests/test_sideband_e2e.py). The tool-call round trip is the one of
tests/test_tools_e2e.py, over the SDK's WebSocket instead of WebRTC.
"""

from __future__ import annotations

import json

import jsonschema_rs
import numpy as np
import pytest

from server.tools.call_client import mint_client_secret
from tests.speech import silence, speak
from tests.test_tools_e2e import WEATHER, WEATHER_PARAMETERS
from tests.ws_client import SdkCall, rms

pytestmark = pytest.mark.slow

RATE = 24000


def question(text: str) -> np.ndarray:
    return np.concatenate([silence(300, RATE), speak(text, RATE)])


def events_of(call: SdkCall, type_: str, after: int = 0, response_id: str | None = None):
    return [
        e
        for e in call.events[after:]
        if e.type == type_ and (response_id is None or e.data.get("response_id") == response_id)
    ]


async def test_a_spoken_question_gets_a_spoken_answer(hark):
    # An ek_ client secret, as a backend would hand a device; the API key works too.
    call = SdkCall(hark.url, await mint_client_secret(hark.url, hark.api_key))
    await call.connect()
    try:
        created = call.events[0]
        assert created.parsed_as == "SessionCreatedEvent"
        fmt = created.data["session"]["audio"]["output"]["format"]
        assert fmt == {"type": "audio/pcm", "rate": RATE}
        mark = len(call.events)
        call.say(question("What is the capital of France?"))
        started = await call.wait_for("input_audio_buffer.speech_started", after=mark)
        stopped = await call.wait_for("input_audio_buffer.speech_stopped", after=mark)
        assert 0 < started.data["audio_start_ms"] < stopped.data["audio_end_ms"]
        heard = await call.wait_for(
            "conversation.item.input_audio_transcription.completed", after=mark
        )
        assert "france" in heard.data["transcript"].lower(), heard.data
        done = await call.wait_for("response.done", after=mark, timeout=90)
        response = done.data["response"]
        assert response["status"] == "completed", response
        answer = call.audio.of(response["id"])
        seconds = len(answer) / RATE
        assert 0.5 < seconds < 20, seconds
        assert rms(answer) > 1000  # speech, not silence
        deltas = events_of(call, "response.output_audio.delta", mark, response["id"])
        assert deltas and {e.parsed_as for e in deltas} == {"ResponseAudioDeltaEvent"}
        types = call.types()[mark:]
        assert types.index("response.output_audio.delta") < types.index(
            "response.output_audio.done"
        )
        last_delta = max(i for i, t in enumerate(types) if t == "response.output_audio.delta")
        assert last_delta < types.index("response.done")
        transcript = response["output"][0]["content"][0]["transcript"]
        assert transcript.strip()
    finally:
        await call.close()


async def test_speech_over_a_websocket_reply_cancels_it(hark):
    call = SdkCall(hark.url, hark.api_key)
    await call.connect()
    try:
        mark = len(call.events)
        call.say(question("Tell me about the moon."))
        first = await call.wait_for("response.output_audio.delta", after=mark, timeout=90)
        response_id = first.data["response_id"]
        barge = len(call.events)
        call.say(speak("Stop. What is two plus two?", RATE))
        done = await call.wait_for(
            "response.done", lambda d: d["response"]["id"] == response_id, after=mark, timeout=60
        )
        response = done.data["response"]
        assert response["status"] == "cancelled", response
        assert response["status_details"]["reason"] == "turn_detected"
        started = call.types()[barge:].index("input_audio_buffer.speech_started") + barge
        assert started < call.events.index(done)
        # Once it was cancelled, no more of its audio came.
        done_index = call.events.index(done)
        assert not events_of(call, "response.output_audio.delta", done_index, response_id)
        # The interruption itself is answered.
        await call.wait_for(
            "response.done", lambda d: d["response"]["id"] != response_id, after=done_index
        )
    finally:
        await call.close()


async def test_truncate_after_partial_playback_keeps_what_was_played(hark):
    call = SdkCall(hark.url, hark.api_key)
    await call.connect()
    try:
        mark = len(call.events)
        await call.send(
            {
                "type": "conversation.item.create",
                "item": {
                    "type": "message",
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "Tell me a story about a brave dragon."}
                    ],
                },
            }
        )
        await call.send({"type": "response.create"})
        first = await call.wait_for("response.output_audio.delta", after=mark, timeout=90)
        response_id, item_id = first.data["response_id"], first.data["item_id"]
        while len(call.audio.of(response_id)) < RATE * 0.7:  # the client has played 0.7 s
            await call.wait_for("response.output_audio.delta", after=len(call.events))
        await call.send(
            {
                "type": "conversation.item.truncate",
                "item_id": item_id,
                "content_index": 0,
                "audio_end_ms": 500,
            }
        )
        truncated = await call.wait_for("conversation.item.truncated", after=mark)
        assert truncated.data["item_id"] == item_id and truncated.data["audio_end_ms"] == 500
        done = await call.wait_for("response.done", after=mark)
        assert done.data["response"]["status"] == "cancelled"
        written = "".join(
            e.data["delta"]
            for e in events_of(call, "response.output_audio_transcript.delta", mark, response_id)
        )
        sent_text = done.data["response"]["output"][0]["content"][0]["transcript"]
        at = len(call.events)
        await call.send({"type": "conversation.item.retrieve", "item_id": item_id})
        retrieved = await call.wait_for("conversation.item.retrieved", after=at)
        kept = retrieved.data["item"]["content"][0]["transcript"]
        assert written.startswith(kept) and written.startswith(sent_text)
        assert len(kept) <= len(sent_text) < len(written), (kept, sent_text, written)
    finally:
        await call.close()


async def test_manual_turns_in_g711(hark):
    """turn_detection null, µ-law both ways: append, commit, response.create at once."""
    call = SdkCall(hark.url, hark.api_key, input_format="ulaw")
    await call.connect(microphone=False)
    try:
        mark = len(call.events)
        await call.send(
            {
                "type": "session.update",
                "session": {
                    "type": "realtime",
                    "audio": {
                        "input": {"format": {"type": "audio/pcmu"}, "turn_detection": None},
                        "output": {"format": {"type": "audio/pcmu"}},
                    },
                },
            }
        )
        updated = await call.wait_for("session.updated", after=mark)
        assert updated.data["session"]["audio"]["input"]["format"] == {"type": "audio/pcmu"}
        call.output_law = "ulaw"
        empty = len(call.events)
        await call.send({"type": "input_audio_buffer.commit"})
        error = await call.wait_for("error", after=empty)
        assert error.data["error"]["code"] == "input_audio_buffer_commit_empty"

        from media import g711

        words = np.concatenate([speak("What is two plus two?", 8000), silence(300, 8000)])
        mark = len(call.events)
        await call.conn.input_audio_buffer.append(
            audio=__import__("base64").b64encode(g711.encode(words, "ulaw")).decode()
        )
        await call.send({"type": "input_audio_buffer.commit"})
        await call.send({"type": "response.create"})
        heard = await call.wait_for(
            "conversation.item.input_audio_transcription.completed", after=mark
        )
        assert "two" in heard.data["transcript"].lower() or "2" in heard.data["transcript"]
        done = await call.wait_for("response.done", after=mark, timeout=90)
        assert done.data["response"]["status"] == "completed"
        # The response resource names the format its audio is in.
        assert done.data["response"]["audio"]["output"]["format"] == {"type": "audio/pcmu"}
        assert not events_of(call, "input_audio_buffer.speech_started", mark)  # no VAD
        answer = call.audio.of(done.data["response"]["id"])
        assert 0.5 < len(answer) / 8000 < 20 and rms(answer) > 1000
    finally:
        await call.close()


async def test_a_spoken_question_a_required_tool_call_and_a_spoken_answer(hark):
    """The SDK's app: tools by `session.update`, a spoken question, the model's call with
    arguments valid against the tool's schema, the app's `function_call_output`, and the
    answer spoken in `response.output_audio.delta`."""
    call = SdkCall(hark.url, hark.api_key)
    await call.connect()
    try:
        mark = len(call.events)
        await call.send(
            {
                "type": "session.update",
                "session": {"type": "realtime", "tools": [WEATHER], "tool_choice": "required"},
            }
        )
        updated = (await call.wait_for("session.updated", after=mark)).data["session"]
        assert [t["name"] for t in updated["tools"]] == ["get_weather"]
        assert updated["tool_choice"] == "required"

        mark = len(call.events)
        call.say(question("What's the weather like in Paris?"))
        arguments = await call.wait_for(
            "response.function_call_arguments.done", after=mark, timeout=90
        )
        assert arguments.parsed_as == "ResponseFunctionCallArgumentsDoneEvent"
        tool_call = arguments.data
        assert tool_call["name"] == "get_weather" and tool_call["call_id"]
        jsonschema_rs.validate(WEATHER_PARAMETERS, json.loads(tool_call["arguments"]))
        done = await call.wait_for("response.done", after=mark, timeout=30)
        output = done.data["response"]["output"]
        assert [item["type"] for item in output] == ["function_call"], output
        assert not call.audio.of(done.data["response"]["id"]).size  # a call is not spoken

        mark = len(call.events)
        await call.send(
            {
                "type": "conversation.item.create",
                "item": {
                    "type": "function_call_output",
                    "call_id": tool_call["call_id"],
                    "output": json.dumps({"city": "Paris", "sky": "sunny", "temp_c": 18}),
                },
            }
        )
        await call.send({"type": "response.create", "response": {"tool_choice": "none"}})
        added = await call.wait_for(
            "conversation.item.added",
            lambda d: d["item"]["type"] == "function_call_output",
            after=mark,
        )
        assert added.data["item"]["call_id"] == tool_call["call_id"]
        answered = await call.wait_for("response.done", after=mark, timeout=90)
        response = answered.data["response"]
        assert response["status"] == "completed", response
        assert [item["type"] for item in response["output"]] == ["message"]
        assert response["output"][0]["content"][0]["transcript"].strip()
        answer = call.audio.of(response["id"])
        assert len(answer) / RATE > 0.5 and rms(answer) > 1000  # spoken, not silence
    finally:
        await call.close()
