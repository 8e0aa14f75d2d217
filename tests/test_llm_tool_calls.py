"""Tool calls through both LLM engines: the streamed-chunk reader, the request body, the
grammar from a JSON Schema, and the embedded model calling tools for real.

The OpenAI-compatible client is checked on streams shaped like vLLM's (fixtures in
tests/fixtures, replayed by a real HTTP server) and against llama.cpp's own server with
its `chatml-function-calling` handler; the embedded engine runs the packaged Gemma.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import jsonschema_rs
import pytest
from aiohttp import web

from server.config import Config
from server.engines.chat import (
    ChatMessage,
    LLMFinish,
    LLMOutput,
    LLMRequest,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    ToolSpec,
)
from server.engines.json_grammar import bounded_schema, grammar_text
from server.engines.llama_cpp_llm import LlamaCppLLM, assemble_gguf
from server.engines.openai_chunks import ChunkError, ChunkReader
from server.engines.openai_llm import OpenAICompatibleLLM, chat_payload
from tests.llama_server import wait_until_up
from tests.server_process import free_port, stop_process

FIXTURES = Path(__file__).parent / "fixtures"
WEATHER = ToolSpec.of(
    "get_weather",
    "Get the current weather for a city.",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
TIMER = ToolSpec.of(
    "set_timer",
    "Start a countdown timer.",
    {"type": "object", "properties": {"minutes": {"type": "integer"}}, "required": ["minutes"]},
)


def sse_payloads(name: str) -> list[str]:
    lines = (FIXTURES / name).read_text().splitlines()
    return [line[5:].strip() for line in lines if line.startswith("data:")]


def calls_of(outputs: list[LLMOutput]) -> dict[int, ToolCall]:
    """The complete calls in a stream, checking each opens once with its id and name."""
    calls: dict[int, ToolCall] = {}
    for out in outputs:
        if not isinstance(out, ToolCallDelta):
            continue
        if out.index not in calls:
            assert out.call_id and out.name, out  # the opening delta names the call
            calls[out.index] = ToolCall(out.call_id, out.name, out.arguments)
        else:
            assert out.call_id is None and out.name is None, out
            old = calls[out.index]
            calls[out.index] = ToolCall(old.call_id, old.name, old.arguments + out.arguments)
    return calls


# ---- reading streamed chunks -------------------------------------------------------------


def test_vllm_shaped_parallel_calls_are_read_in_order():
    reader = ChunkReader()
    outputs = [
        out for data in sse_payloads("vllm_hermes_two_calls.sse")[:-1] for out in reader.feed(data)
    ]
    calls = calls_of(outputs)
    assert calls[0] == ToolCall(
        "chatcmpl-tool-8e1f0c6b2a9d47c3", "get_weather", '{"city": "Paris"}'
    )
    assert calls[1] == ToolCall("chatcmpl-tool-41d2b7e09c5f4a18", "set_timer", '{"minutes": 10}')
    assert outputs[-1] == LLMFinish("tool_calls")
    assert not any(isinstance(out, str) for out in outputs)  # the empty contents are no text


def test_a_server_that_repeats_id_and_name_on_every_delta_is_not_doubled():
    # llama.cpp's Python server (chatml-function-calling) sends both with every fragment.
    reader = ChunkReader()
    outputs: list[LLMOutput] = []
    for fragment in ['{"city"', ': "Oslo"', "}"]:
        delta = {
            "tool_calls": [
                {
                    "index": 0,
                    "id": "call__0_get_weather_cmpl-1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": fragment},
                }
            ]
        }
        outputs += reader.feed(json.dumps({"choices": [{"index": 0, "delta": delta}]}))
    assert calls_of(outputs) == {
        0: ToolCall("call__0_get_weather_cmpl-1", "get_weather", '{"city": "Oslo"}')
    }


def test_arguments_before_the_name_wait_for_it_and_a_missing_id_is_made():
    reader = ChunkReader()
    first = reader.feed(
        json.dumps(
            {
                "choices": [
                    {"delta": {"tool_calls": [{"index": 0, "function": {"arguments": '{"a"'}}]}}
                ]
            }
        )
    )
    assert first == []  # an opening delta must carry the name
    second = reader.feed(
        json.dumps(
            {
                "choices": [
                    {
                        "delta": {
                            "tool_calls": [
                                {"index": 0, "function": {"name": "f", "arguments": ": 1}"}}
                            ]
                        }
                    }
                ]
            }
        )
    )
    assert len(second) == 1 and second[0].name == "f" and second[0].arguments == '{"a": 1}'
    assert second[0].call_id and second[0].call_id.startswith("call_")
    with pytest.raises(ChunkError, match="mid-stream"):
        reader.feed('{"error": {"message": "out of memory"}}')
    with pytest.raises(ChunkError, match="invalid JSON"):
        reader.feed("{oops")


def test_the_request_body_carries_tools_and_the_history_in_the_chat_format():
    history = (
        ChatMessage("user", "Weather in Paris?"),
        ChatMessage(
            "assistant", "", tool_calls=(ToolCall("call_1", "get_weather", '{"city": "Paris"}'),)
        ),
        ChatMessage("tool", "18 C and sunny", tool_call_id="call_1", name="get_weather"),
    )
    body = chat_payload(
        LLMRequest("Be brief.", history, (WEATHER,), ToolChoice.function("get_weather"), 77),
        "m",
        60,
    )
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert body["messages"][2] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            }
        ],
    }
    assert body["messages"][3] == {
        "role": "tool",
        "tool_call_id": "call_1",
        "content": "18 C and sunny",
    }
    assert body["tools"][0]["function"]["parameters"] == WEATHER.parameters
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert body["max_tokens"] == 77
    plain = chat_payload(LLMRequest("", history[:1]), "m", 60)
    assert "tools" not in plain and "tool_choice" not in plain and plain["max_tokens"] == 60


@pytest.fixture
async def replay_server() -> AsyncIterator[str]:
    """A real HTTP server that streams a fixture as a chat completion."""

    async def completions(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        name = "vllm_text_then_call.sse" if body.get("tools") else "vllm_hermes_two_calls.sse"
        for payload in sse_payloads(name):
            await response.write(f"data: {payload}\n\n".encode())
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", completions)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}/v1"
    await runner.cleanup()


async def test_the_client_streams_text_then_a_call_over_http(replay_server: str) -> None:
    engine = OpenAICompatibleLLM(replay_server, model="tiny-qwen2")
    try:
        request = LLMRequest("", (ChatMessage("user", "Weather in Oslo?"),), (WEATHER,))
        outputs = [out async for out in engine.stream(request)]
    finally:
        await engine.close()
    assert "".join(o for o in outputs if isinstance(o, str)) == "Let me check."
    assert calls_of(outputs) == {
        0: ToolCall("chatcmpl-tool-0a9b8c7d6e5f4a3b", "get_weather", '{"city": "Oslo"}')
    }
    assert outputs[-1] == LLMFinish("tool_calls")


# ---- grammars ----------------------------------------------------------------------------


def test_grammars_bound_open_strings_and_arrays():
    schema = {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            "days": {"type": "array", "items": {"type": "integer"}},
        },
        "required": ["city"],
    }
    bounded = bounded_schema(schema)
    assert bounded["properties"]["city"]["maxLength"] == 60
    assert "maxLength" not in bounded["properties"]["unit"]  # an enum is bounded already
    assert bounded["properties"]["days"]["maxItems"] == 6
    assert "maxLength" not in schema["properties"]["city"]  # the tool's own is untouched
    text = grammar_text(schema)
    assert '"\\"celsius\\""' in text and "root ::=" in text
    assert grammar_text({"type": "object"}) == 'root ::= "{" "}"'  # no properties: {}


def test_boolean_property_schemas_make_a_grammar_not_the_any_object_fallback():
    """JSON Schema (and so the tool validator) allows `true`/`false` as a property's schema."""
    schema = {
        "type": "object",
        "properties": {"note": True, "never": False, "city": {"type": "string"}},
    }
    bounded = bounded_schema(schema)
    assert bounded["properties"] == {"note": {}, "city": {"type": "string", "maxLength": 60}}
    text = grammar_text(schema)
    assert "note-kv" in text and "city-kv" in text and "never" not in text


# ---- the embedded model ------------------------------------------------------------------

SCHEMAS = [
    WEATHER,
    TIMER,
    ToolSpec.of(
        "book_flight",
        "Book a flight.",
        {
            "type": "object",
            "properties": {
                "to": {"type": "string"},
                "seats": {"type": "integer", "minimum": 1},
                "class": {"type": "string", "enum": ["economy", "business"]},
                "meals": {"type": "array", "items": {"type": "string"}},
                "flexible": {"type": "boolean"},
            },
            "required": ["to", "seats", "class"],
        },
    ),
]


QUESTIONS = {
    "get_weather": "Is it raining in Lisbon?",
    "set_timer": "Remind me in six minutes.",
    "book_flight": "Fly me to Rome, two seats in business.",
}


@pytest.fixture(scope="module")
async def gemma() -> AsyncIterator[LlamaCppLLM]:
    cache = Path(os.environ.get("HARK_CACHE_DIR") or Config().cache_dir)
    engine = LlamaCppLLM(cache_dir=cache, threads=2)
    await engine.load()
    yield engine


async def collect(engine, request: LLMRequest) -> list[LLMOutput]:
    return [out async for out in engine.stream(request)]


@pytest.mark.slow
@pytest.mark.parametrize("tool", SCHEMAS, ids=lambda t: t.name)
async def test_a_required_call_has_schema_valid_arguments(
    gemma: LlamaCppLLM, tool: ToolSpec
) -> None:
    question = QUESTIONS[tool.name]
    request = LLMRequest(
        "", (ChatMessage("user", question),), tuple(SCHEMAS), ToolChoice.function(tool.name)
    )
    outputs = await collect(gemma, request)
    calls = calls_of(outputs)
    assert list(calls) == [0] and calls[0].name == tool.name
    arguments = json.loads(calls[0].arguments)
    jsonschema_rs.validate(tool.parameters, arguments)  # raises if the model broke the schema
    assert outputs[-1] == LLMFinish("tool_calls")
    assert not any(isinstance(out, str) for out in outputs)  # a call is not an answer


@pytest.mark.slow
async def test_auto_calls_for_a_tools_task_and_answers_a_question(gemma: LlamaCppLLM) -> None:
    tools = (WEATHER, TIMER)
    weather = calls_of(
        await collect(
            gemma,
            LLMRequest("", (ChatMessage("user", "What's the weather like in Paris?"),), tools),
        )
    )
    assert weather[0].name == "get_weather" and json.loads(weather[0].arguments) == {
        "city": "Paris"
    }
    answer = await collect(
        gemma, LLMRequest("", (ChatMessage("user", "Who wrote Romeo and Juliet?"),), tools)
    )
    assert not calls_of(answer) and "".join(o for o in answer if isinstance(o, str)).strip()
    # `none` never calls; after a tool's output, `auto` answers from it.
    none = await collect(
        gemma,
        LLMRequest(
            "",
            (ChatMessage("user", "What's the weather like in Paris?"),),
            tools,
            ToolChoice("none"),
        ),
    )
    assert not calls_of(none)
    history = (
        ChatMessage("user", "What's the weather like in Paris?"),
        ChatMessage(
            "assistant", "", tool_calls=(ToolCall("c1", "get_weather", '{"city": "Paris"}'),)
        ),
        ChatMessage(
            "tool", '{"sky": "sunny", "temp_c": 18}', tool_call_id="c1", name="get_weather"
        ),
    )
    spoken = await collect(gemma, LLMRequest("", history, tools))
    assert not calls_of(spoken) and "".join(o for o in spoken if isinstance(o, str)).strip()


@pytest.mark.slow
async def test_max_tokens_cuts_the_reply_and_says_so(gemma: LlamaCppLLM) -> None:
    outputs = await collect(
        gemma, LLMRequest("", (ChatMessage("user", "Tell me about the ocean."),), max_tokens=3)
    )
    assert len([o for o in outputs if isinstance(o, str)]) <= 3
    assert outputs[-1] == LLMFinish("length")


# ---- llama.cpp's own server, with its function-calling chat handler ------------------------


@pytest.fixture(scope="module")
def tools_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    cache = Path(os.environ.get("HARK_CACHE_DIR") or Config().cache_dir)
    model = assemble_gguf(cache)
    port = free_port()
    log = tmp_path_factory.mktemp("llama-tools-server") / "server.log"
    command = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(model),
        "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--n_threads", "2",
        "--use_mlock", "False", "--chat_format", "chatml-function-calling",
    ]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}/v1"
        wait_until_up(f"{url}/models", proc, log)
        yield url
    finally:
        stop_process(proc, timeout=10)


@pytest.mark.slow
async def test_llama_cpp_server_streams_a_named_call_the_client_reads(tools_server: str) -> None:
    engine = OpenAICompatibleLLM(tools_server, model="", max_tokens=80)
    await engine.load()
    try:
        request = LLMRequest(
            "You call tools.",
            (ChatMessage("user", "Set a timer for ten minutes."),),
            (WEATHER, TIMER),
            ToolChoice.function("set_timer"),
        )
        outputs = [out async for out in engine.stream(request)]
    finally:
        await engine.close()
    calls = calls_of(outputs)
    assert list(calls) == [0] and calls[0].name == "set_timer" and calls[0].call_id
    jsonschema_rs.validate(TIMER.parameters, json.loads(calls[0].arguments))
    assert outputs[-1] == LLMFinish("tool_calls")
