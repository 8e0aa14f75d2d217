"""Function tools, response options and items as clients send them: parsed, echoed, refused.

Every refusal must name the parameter (an app developer reads `param` first), and what
Hark cannot honour (MCP tools, images, audio parts, other modalities) is refused, not
silently dropped.
"""

from __future__ import annotations

import pytest

from server.engines.chat import ChatMessage, ToolCall, ToolChoice
from server.engines.prompt import build_prompt
from server.protocol.conversation import Conversation, Item, chat_messages
from server.protocol.item_input import parse_item
from server.protocol.params import InvalidParam
from server.protocol.response_params import ItemReference, parse_response_params
from server.protocol.session_config import SessionConfig
from server.protocol.tools import parse_tool_choice, parse_tools

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Get the current weather for a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


def refused(fn, *args) -> InvalidParam:
    with pytest.raises(InvalidParam) as info:
        fn(*args)
    assert str(info.value)
    return info.value


def test_session_tools_are_stored_and_echoed_in_the_ga_shape():
    config = SessionConfig().apply(
        {
            "tools": [WEATHER],
            "tool_choice": {"type": "function", "name": "get_weather"},
            "output_modalities": ["text"],
            "max_output_tokens": 120,
            "audio": {"output": {"speed": 1.25}},
        }
    )
    assert config.tools[0].name == "get_weather"
    assert config.tools[0].parameters == WEATHER["parameters"]
    assert config.tool_choice == ToolChoice.function("get_weather")
    shown = config.to_dict("sess_1")
    assert shown["tools"] == [WEATHER]
    assert shown["tool_choice"] == {"type": "function", "name": "get_weather"}
    assert shown["output_modalities"] == ["text"]
    assert shown["max_output_tokens"] == 120
    assert shown["audio"]["output"]["speed"] == 1.25
    # Defaults and "inf" round-trip.
    again = config.apply({"tool_choice": "required", "max_output_tokens": "inf"})
    assert again.to_dict("s")["tool_choice"] == "required"
    assert again.to_dict("s")["max_output_tokens"] == "inf" and again.max_output_tokens is None


@pytest.mark.parametrize(
    ("tools", "param", "code"),
    [
        ([{**WEATHER, "parameters": "a string"}], "session.tools[0].parameters", "invalid_value"),
        (
            [{**WEATHER, "parameters": {"type": "string"}}],
            "session.tools[0].parameters.type",
            "invalid_value",
        ),
        (
            [{**WEATHER, "parameters": {"type": "object", "properties": {"c": {"type": "strin"}}}}],
            "session.tools[0].parameters.properties.c.type",
            "invalid_value",
        ),
        (
            [
                {
                    **WEATHER,
                    "parameters": {"type": "object", "properties": {"c": {"$ref": "http://x/y"}}},
                }
            ],
            "session.tools[0].parameters.properties.c.$ref",
            "invalid_value",
        ),
        ([{"type": "mcp", "server_label": "x"}], "session.tools[0].type", "unsupported_tool_type"),
        ([{**WEATHER, "name": "has spaces"}], "session.tools[0].name", "invalid_value"),
        ("get_weather", "session.tools", "invalid_value"),
    ],
)
def test_bad_tools_are_refused_naming_the_parameter(tools, param, code):
    error = refused(SessionConfig().apply, {"tools": tools})
    assert error.param == param and error.code == code


def test_tool_choice_shapes_and_refusals():
    assert parse_tool_choice("auto", "p") == ToolChoice("auto")
    assert parse_tool_choice("none", "p").mode == "none"
    # The Chat Completions shape nests the name; both are understood.
    nested = {"type": "function", "function": {"name": "get_weather"}}
    assert parse_tool_choice(nested, "p") == ToolChoice.function("get_weather")
    assert refused(parse_tool_choice, "sometimes", "p").param == "p"
    assert refused(parse_tool_choice, {"type": "mcp", "server_label": "x"}, "p").param == "p.type"
    # A named function must be among the tools.
    error = refused(
        SessionConfig().apply,
        {"tools": [WEATHER], "tool_choice": {"type": "function", "name": "nope"}},
    )
    assert error.param == "session.tool_choice.name"
    assert len(parse_tools([], "t")) == 0


@pytest.mark.parametrize(
    ("update", "param"),
    [
        ({"output_modalities": ["video"]}, "session.output_modalities[0]"),
        ({"output_modalities": []}, "session.output_modalities"),
        ({"max_output_tokens": 0}, "session.max_output_tokens"),
        ({"max_output_tokens": "lots"}, "session.max_output_tokens"),
        ({"audio": {"output": {"speed": 3}}}, "session.audio.output.speed"),
        ({"prompt": {"id": "pmpt_1"}}, "session.prompt"),
    ],
)
def test_what_hark_cannot_honour_is_refused(update, param):
    assert refused(SessionConfig().apply, update).param == param


def test_a_transcription_session_has_its_own_shape():
    config = SessionConfig().apply({"type": "transcription"})
    assert config.transcription_only
    shown = config.to_dict("sess_t")
    assert shown["type"] == "transcription"
    assert shown["object"] == "realtime.transcription_session"
    assert "tools" not in shown and "instructions" not in shown
    assert shown["audio"]["input"]["turn_detection"]["type"]
    # A later update without a type keeps it.
    assert config.apply({"audio": {}}).transcription_only


def test_items_of_every_kind_parse_and_what_cannot_be_honoured_is_named():
    call = parse_item(
        {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{}"}
    )
    assert (call.type, call.call_id, call.name) == ("function_call", "call_1", "get_weather")
    output = parse_item({"type": "function_call_output", "call_id": "call_1", "output": "18 C"})
    assert output.to_dict()["output"] == "18 C" and output.to_dict()["call_id"] == "call_1"
    image = {"type": "input_image", "image_url": "data:image/png;base64,AAAA"}
    message = {"type": "message", "role": "user", "content": [image]}
    error = refused(parse_item, message)
    assert error.param == "item.content[0].type" and error.code == "unsupported_content"
    audio = {"type": "message", "role": "user", "content": [{"type": "input_audio", "audio": "AA"}]}
    assert refused(parse_item, audio).code == "unsupported_content"
    mcp = refused(parse_item, {"type": "mcp_call", "name": "x"})
    assert mcp.param == "item.type" and mcp.code == "unsupported_item_type"
    assert (
        refused(parse_item, {"type": "function_call_output", "output": "x"}).param == "item.call_id"
    )


def test_the_history_carries_calls_and_outputs_in_the_chat_format():
    items = [
        Item("u1", "user", "input_text", "Weather in Paris? And set a timer."),
        Item("a1", "assistant", "output_audio", "Let me check."),
        Item.function_call("f1", "call_1", "get_weather", '{"city": "Paris"}'),
        Item.function_call("f2", "call_2", "set_timer", '{"minutes": 5}'),
        Item("u2", "user", "input_text", "Thanks!"),  # said while the tools ran
        Item.function_call_output("o2", "call_2", "timer set"),
        Item.function_call_output("o1", "call_1", '{"temp_c": 18}'),
        Item.function_call("f3", "call_3", "get_weather", "{}"),  # never answered: left out
        Item.function_call_output("o9", "call_9", "orphan"),  # its call is gone: left out
    ]
    messages = chat_messages(items)
    assert [m.role for m in messages] == ["user", "assistant", "tool", "tool", "user"]
    assert messages[1] == ChatMessage(
        "assistant",
        "Let me check.",
        tool_calls=(
            ToolCall("call_1", "get_weather", '{"city": "Paris"}'),
            ToolCall("call_2", "set_timer", '{"minutes": 5}'),
        ),
    )
    assert (messages[2].tool_call_id, messages[2].name, messages[2].content) == (
        "call_1",
        "get_weather",
        '{"temp_c": 18}',
    )
    conversation = Conversation()
    for item in items:
        conversation.add(item)
    assert conversation.find_call("call_2").id == "f2" and conversation.find_call("nope") is None


def test_the_few_shot_prompt_renders_a_tools_output_for_the_answer():
    history = [
        ChatMessage("user", "What's the weather in Paris?"),
        ChatMessage("assistant", "", tool_calls=(ToolCall("c1", "get_weather", "{}"),)),
        ChatMessage(
            "tool", '{"temp_c": 18, "sky": "sunny"}', tool_call_id="c1", name="get_weather"
        ),
    ]
    prompt = build_prompt("Be brief.", history)
    output_line = '(get_weather returned {"temp_c": 18, "sky": "sunny"})'
    assert prompt.endswith(f"Q: What's the weather in Paris?\n{output_line}\nA:")
    assert "send_email returned" in prompt  # the examples of answering from an output
    assert "returned" not in build_prompt("Be brief.", history[:1])  # only when needed


def test_response_create_options_parse_and_refuse_by_name():
    params = parse_response_params(
        {
            "conversation": "none",
            "output_modalities": ["text"],
            "metadata": {"topic": "weather"},
            "instructions": "Summarise.",
            "max_output_tokens": 16,
            "tools": [WEATHER],
            "tool_choice": "required",
            "audio": {"output": {"voice": {"id": "voice_1"}}},
            "input": [
                {"type": "item_reference", "id": "item_1"},
                {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": "Hi"}],
                },
            ],
        }
    )
    assert params.out_of_band and params.output_modality == "text"
    assert params.metadata_dict == {"topic": "weather"} and params.voice == "voice_1"
    assert params.max_output_tokens == 16 and params.sets_max_output_tokens
    assert params.tool_choice == ToolChoice("required") and params.tools[0].name == "get_weather"
    assert params.input[0] == ItemReference("item_1") and params.input[1].text == "Hi"
    for raw, param in [
        ({"conversation": "conv_42"}, "response.conversation"),
        ({"metadata": {"k": 5}}, "response.metadata.k"),
        ({"metadata": {str(i): "v" for i in range(17)}}, "response.metadata"),
        ({"output_modalities": ["image"]}, "response.output_modalities[0]"),
        (
            {"input": [{"type": "message", "role": "user", "content": [{"type": "input_image"}]}]},
            "response.input[0].content[0].type",
        ),
        ({"tools": [{"type": "mcp"}]}, "response.tools[0].type"),
        ({"max_output_tokens": 5000}, "response.max_output_tokens"),
    ]:
        assert refused(parse_response_params, raw).param == param
