"""What a response shows the client, event by event: tool calls, written replies,
out-of-band replies. The LLM is a scripted fake (named so) and the TTS and track those of
tests/test_response_pacing.py, so every event and its order is exact.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from server.engines.chat import (
    ChatMessage,
    LLMFinish,
    LLMOutput,
    LLMRequest,
    ToolCallDelta,
)
from server.protocol.conversation import Conversation
from server.reply.response import ResponseRun
from server.reply.spec import ReplySpec
from server.turns.timings import TurnTimings
from tests.test_response_pacing import FakeLLM, FakeTrack, FakeTTS


class ScriptedLLM:
    """A fake LLM: yields exactly the outputs it is given."""

    name = "scripted-llm"

    def __init__(self, outputs: list[LLMOutput]) -> None:
        self.outputs = outputs
        self.requests: list[LLMRequest] = []

    async def load(self) -> None:
        pass

    async def stream(self, request: LLMRequest) -> AsyncIterator[LLMOutput]:
        self.requests.append(request)
        for out in self.outputs:
            yield out
            await asyncio.sleep(0)


async def respond(
    outputs: list[LLMOutput], request: LLMRequest | None = None, **spec: Any
) -> tuple[list[dict[str, Any]], Conversation, FakeTrack, ResponseRun]:
    events: list[dict[str, Any]] = []
    conversation = Conversation()
    track = FakeTrack()
    done = asyncio.Event()
    run = ResponseRun(
        response_id="resp_1",
        conversation=conversation,
        llm=ScriptedLLM(outputs),  # type: ignore[arg-type]
        tts=FakeTTS(FakeLLM([]), delay=0.0),  # type: ignore[arg-type]
        track=track,  # type: ignore[arg-type]
        emit=events.append,
        spec=ReplySpec(request or LLMRequest("", (ChatMessage("user", "Weather?"),)), **spec),
        timings=TurnTimings(),
        on_finished=lambda _: done.set(),
    )
    run.start()
    await asyncio.wait_for(done.wait(), 5)
    return events, conversation, track, run


def of_type(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == kind]


CALL = [
    ToolCallDelta(0, "", call_id="call_abc", name="get_weather"),
    ToolCallDelta(0, '{"city": '),
    ToolCallDelta(0, '"Paris"}'),
    LLMFinish("tool_calls"),
]


async def test_a_tool_call_streams_its_arguments_and_is_never_spoken() -> None:
    events, conversation, track, run = await respond(CALL)
    types = [e["type"] for e in events]
    assert types == [
        "response.created",
        "response.output_item.added",
        "conversation.item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "conversation.item.done",
        "response.done",
        "hark.metrics",
    ]
    added = events[1]
    assert added["output_index"] == 0 and added["item"]["type"] == "function_call"
    assert added["item"]["arguments"] == "" and added["item"]["status"] == "in_progress"
    assert added["item"]["call_id"] == "call_abc" and added["item"]["name"] == "get_weather"
    for delta in of_type(events, "response.function_call_arguments.delta"):
        assert delta["call_id"] == "call_abc" and delta["item_id"] == added["item"]["id"]
        assert delta["response_id"] == "resp_1" and delta["output_index"] == 0
    done_args = of_type(events, "response.function_call_arguments.done")[0]
    assert done_args["arguments"] == '{"city": "Paris"}' and done_args["name"] == "get_weather"
    output = events[-2]["response"]["output"]
    assert events[-2]["response"]["status"] == "completed"
    assert output == [
        {
            "id": added["item"]["id"],
            "type": "function_call",
            "object": "realtime.item",
            "status": "completed",
            "call_id": "call_abc",
            "name": "get_weather",
            "arguments": '{"city": "Paris"}',
        }
    ]
    assert track.pushed == [] and track.response_id is None  # nothing spoken
    assert conversation.find_call("call_abc") is not None and run.tool_calls


async def test_words_and_a_call_in_one_response_get_their_own_output_indexes() -> None:
    events, conversation, track, _ = await respond(["Let me check.", *CALL])
    items = [
        (e["output_index"], e["item"]["type"])
        for e in of_type(events, "response.output_item.added")
    ]
    assert items == [(0, "message"), (1, "function_call")]
    done = events[-2]["response"]
    assert [item["type"] for item in done["output"]] == ["message", "function_call"]
    assert done["output"][0]["content"][0] == {
        "type": "output_audio",
        "transcript": "Let me check.",
    }
    assert of_type(events, "response.function_call_arguments.done")[0]["output_index"] == 1
    assert len(track.pushed) == 1  # the words were spoken, the call was not
    assert len(conversation) == 2


async def test_a_written_reply_streams_text_and_never_touches_the_track() -> None:
    events, conversation, track, _ = await respond(["Paris", " is sunny."], modality="text")
    types = [e["type"] for e in events]
    assert "response.output_audio_transcript.delta" not in types
    assert not any(t.startswith("output_audio_buffer") or "output_audio" in t for t in types)
    assert [e["delta"] for e in of_type(events, "response.output_text.delta")] == [
        "Paris",
        " is sunny.",
    ]
    assert of_type(events, "response.output_text.done")[0]["text"] == "Paris is sunny."
    assert of_type(events, "response.content_part.added")[0]["part"] == {"type": "text", "text": ""}
    done = events[-2]["response"]
    assert done["output_modalities"] == ["text"]
    assert done["output"][0]["content"][0] == {"type": "output_text", "text": "Paris is sunny."}
    assert track.pushed == [] and track.response_id is None
    assert conversation.last_id == done["output"][0]["id"]


async def test_an_out_of_band_reply_leaves_the_conversation_alone_and_echoes_metadata() -> None:
    events, conversation, _, _ = await respond(
        ["Weather."], modality="text", in_conversation=False, metadata=(("purpose", "summary"),)
    )
    assert not any(e["type"].startswith("conversation.item") for e in events)
    assert len(conversation) == 0
    for event in (events[0], events[-2]):
        assert event["response"]["metadata"] == {"purpose": "summary"}
        assert event["response"]["conversation_id"] is None


async def test_a_capped_reply_is_incomplete() -> None:
    capped = LLMRequest("", (), max_tokens=1)
    events, _, _, run = await respond(["Paris", LLMFinish("length")], capped, modality="text")
    done = events[-2]["response"]
    assert done["status"] == "incomplete"
    assert done["status_details"] == {"type": "incomplete", "reason": "max_output_tokens"}
    assert done["max_output_tokens"] == 1 and run.status == "incomplete"
    # The server's own cap (no max_output_tokens asked) is no reason to call it incomplete.
    events, _, _, run = await respond(["Paris", LLMFinish("length")], modality="text")
    assert events[-2]["response"]["status"] == "completed"
