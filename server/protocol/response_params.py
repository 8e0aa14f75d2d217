"""The options of one `response.create`, parsed and checked; unset ones follow the session.

`conversation: "none"` makes an out-of-band response (its items stay out of the
conversation); `input` replaces the conversation as the response's context (items, or
`{"type": "item_reference", "id"}` to reuse one already in the conversation);
`metadata` is echoed in `response.created` and `response.done`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from server.engines.chat import ToolChoice, ToolSpec
from server.protocol.conversation import Item
from server.protocol.item_input import parse_item
from server.protocol.params import InvalidParam
from server.protocol.session_config import MAX_VOICE_CHARS, Modality, response_defaults
from server.protocol.tools import check_choice_names_a_tool

MAX_METADATA_PAIRS = 16
MAX_METADATA_KEY = 64
MAX_METADATA_VALUE = 512
MAX_INPUT_ITEMS = 100
MAX_INSTRUCTIONS_CHARS = 16_000


@dataclass(frozen=True)
class ItemReference:
    """`{"type": "item_reference", "id"}` in `input`: an item of the conversation."""

    id: str


@dataclass(frozen=True)
class ResponseParams:
    instructions: str | None = None
    tools: tuple[ToolSpec, ...] | None = None
    tool_choice: ToolChoice | None = None
    output_modality: Modality | None = None
    max_output_tokens: int | None = None
    sets_max_output_tokens: bool = False  # `max_output_tokens` given ("inf" is None)
    voice: str | None = None
    out_of_band: bool = False  # conversation: "none"
    metadata: tuple[tuple[str, str], ...] | None = None
    input: tuple[Item | ItemReference, ...] | None = None

    @property
    def metadata_dict(self) -> dict[str, str] | None:
        return None if self.metadata is None else dict(self.metadata)


def parse_response_params(raw: Any, param: str = "response") -> ResponseParams:
    if raw is None:
        return ResponseParams()
    if not isinstance(raw, dict):
        raise InvalidParam(param, f"'{param}' must be an object")
    fields: dict[str, Any] = {}
    instructions = raw.get("instructions")
    if instructions is not None:
        if not isinstance(instructions, str) or len(instructions) > MAX_INSTRUCTIONS_CHARS:
            raise InvalidParam(f"{param}.instructions", f"{param}.instructions must be a string")
        fields["instructions"] = instructions
    shared = response_defaults(raw, param)
    fields["tools"] = shared.get("tools")
    fields["tool_choice"] = shared.get("tool_choice")
    fields["output_modality"] = shared.get("output_modality")
    if "max_output_tokens" in shared:
        fields["max_output_tokens"] = shared["max_output_tokens"]
        fields["sets_max_output_tokens"] = True
    if fields["tool_choice"] is not None and fields["tools"] is not None:
        check_choice_names_a_tool(fields["tool_choice"], fields["tools"], f"{param}.tool_choice")
    if raw.get("prompt") is not None:
        raise InvalidParam(f"{param}.prompt", "Stored prompts are not supported")
    fields["voice"] = _voice(raw.get("audio"), f"{param}.audio")
    conversation = raw.get("conversation", "auto")
    if conversation not in ("auto", "none"):
        raise InvalidParam(
            f"{param}.conversation", f"{param}.conversation must be 'auto' or 'none'"
        )
    fields["out_of_band"] = conversation == "none"
    if raw.get("metadata") is not None:
        fields["metadata"] = _metadata(raw["metadata"], f"{param}.metadata")
    if raw.get("input") is not None:
        fields["input"] = _input(raw["input"], f"{param}.input")
    return ResponseParams(**fields)


def _voice(audio: Any, param: str) -> str | None:
    if audio is None:
        return None
    if not isinstance(audio, dict):
        raise InvalidParam(param, f"{param} must be an object")
    output = audio.get("output")
    if output is None:
        return None
    if not isinstance(output, dict):
        raise InvalidParam(f"{param}.output", f"{param}.output must be an object")
    voice = output.get("voice")
    if isinstance(voice, dict):  # a custom voice: {"id": "voice_1234"}
        voice = voice.get("id")
    if voice is None:
        return None
    if not isinstance(voice, str) or len(voice) > MAX_VOICE_CHARS:
        raise InvalidParam(f"{param}.output.voice", f"{param}.output.voice must be a string")
    return voice


def _metadata(raw: Any, param: str) -> tuple[tuple[str, str], ...]:
    if not isinstance(raw, dict) or len(raw) > MAX_METADATA_PAIRS:
        raise InvalidParam(param, f"{param} must be an object of at most 16 pairs")
    for key, value in raw.items():
        if len(key) > MAX_METADATA_KEY:
            raise InvalidParam(f"{param}.{key[:64]}", f"{param} keys are at most 64 characters")
        if not isinstance(value, str) or len(value) > MAX_METADATA_VALUE:
            raise InvalidParam(f"{param}.{key}", f"{param} values are strings of at most 512")
    return tuple(raw.items())


def _input(raw: Any, param: str) -> tuple[Item | ItemReference, ...]:
    if not isinstance(raw, list) or len(raw) > MAX_INPUT_ITEMS:
        raise InvalidParam(param, f"{param} must be an array of at most {MAX_INPUT_ITEMS} items")
    items: list[Item | ItemReference] = []
    for index, entry in enumerate(raw):
        where = f"{param}[{index}]"
        if isinstance(entry, dict) and entry.get("type") == "item_reference":
            if not isinstance(entry.get("id"), str):
                raise InvalidParam(f"{where}.id", f"{where}.id must be an item id")
            items.append(ItemReference(entry["id"]))
        else:
            items.append(parse_item(entry, where))
    return tuple(items)
