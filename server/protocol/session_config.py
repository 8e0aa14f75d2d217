"""The session configuration a client can set, in OpenAI Realtime's GA shape.

Parsed from a client secret's `session`, a multipart `session` field, or a
`session.update` event; rendered back as the `session` object of `session.created` /
`session.updated`. Unknown fields are ignored (clients send many Hark does not use);
wrong types and out-of-range values, and what Hark cannot honour (tools other than
functions, output modalities other than audio or text, stored prompts), are refused
with the offending parameter named.

A session is `realtime` (a voice assistant) or `transcription` (turns are transcribed,
never answered); its type is fixed once the call exists.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from server.engines.chat import ToolChoice, ToolSpec
from server.protocol.audio_format import AudioFormat, AudioFormatError, parse_audio_format
from server.protocol.params import InvalidParam
from server.protocol.tools import (
    check_choice_names_a_tool,
    parse_tool_choice,
    parse_tools,
    tool_choice_value,
    tool_dict,
)
from server.protocol.transcription import TranscriptionConfig, parse_transcription
from server.turns.end_of_turn import EAGERNESS
from server.turns.options import (
    ECHO_GUARD_MODES,
    TURN_DETECTION_TYPES,
    EchoGuardMode,
    InterruptionOptions,
    TurnDetectionConfig,
)

MAX_MODEL_CHARS = 200
MAX_INSTRUCTIONS_CHARS = 16_000
MAX_VOICE_CHARS = 100
MAX_PERSONA_CHARS = 64
CONVERSATION_ID = re.compile(r"conv_[0-9a-f]{20}")
# turn_detection's numbers and their accepted ranges (also published by the OpenAPI
# document, signaling/openapi.py); the flags are true/false;
# echo_guard is auto/on/off (true/false accepted) or null.
TURN_DETECTION_RANGES: dict[str, tuple[float, float]] = {
    "threshold": (0.0, 1.0),
    "prefix_padding_ms": (0, 5000),
    "silence_duration_ms": (0, 10_000),
    "min_interruption_ms": (0, 10_000),
    "min_interruption_words": (0, 20),
    "false_interruption_timeout_ms": (0, 30_000),
}
TURN_DETECTION_FLAGS = ("create_response", "interrupt_response", "speculative_reply")
SESSION_TYPES = ("realtime", "transcription")
MAX_OUTPUT_TOKENS = 4096
SPEED_RANGE = (0.25, 1.5)

SessionType = Literal["realtime", "transcription"]
Modality = Literal["audio", "text"]

# A client's parameter refused, with its name (e.g. `session.tools[0].parameters`).
SessionConfigError = InvalidParam


@dataclass(frozen=True)
class SessionConfig:
    model: str = "hark"
    instructions: str = ""
    voice: str = "joe"
    turn_detection: TurnDetectionConfig | None = field(default_factory=TurnDetectionConfig)
    type: SessionType = "realtime"
    tools: tuple[ToolSpec, ...] = ()
    tool_choice: ToolChoice = field(default_factory=ToolChoice)
    output_modality: Modality = "audio"
    max_output_tokens: int | None = None  # None: "inf" (the server's own cap)
    speed: float = 1.0
    transcription: TranscriptionConfig = field(default_factory=TranscriptionConfig)

    input_format: AudioFormat = field(default_factory=AudioFormat)
    output_format: AudioFormat = field(default_factory=AudioFormat)
    # Hark's extensions: the conversation the call continues (or was given), the persona
    # it speaks as, and whether it is recorded (see the README's Memory section).
    conversation: str | None = None
    persona: str | None = None
    recording: bool = False

    @property
    def transcription_only(self) -> bool:
        return self.type == "transcription"

    def apply(self, update: Any) -> SessionConfig:
        """A new config with `update` (a GA or beta-shaped session dict) applied."""
        if not isinstance(update, dict):
            raise SessionConfigError("session", "session must be a JSON object")
        changes: dict[str, Any] = {}
        kind = update.get("type", self.type)
        if kind not in SESSION_TYPES:
            raise SessionConfigError(
                "session.type",
                f"Unsupported session type {str(kind)[:40]!r}; use 'realtime' or 'transcription'",
            )
        changes["type"] = kind
        if update.get("prompt") is not None:
            raise SessionConfigError(
                "session.prompt", "Stored prompts are not supported; send instructions instead"
            )
        changes.update(response_defaults(update, "session"))
        tools = changes.get("tools", self.tools)
        choice = changes.get("tool_choice", self.tool_choice)
        check_choice_names_a_tool(choice, tools, "session.tool_choice")
        if "model" in update:
            changes["model"] = _string(update["model"], "session.model", MAX_MODEL_CHARS)
        if "instructions" in update:
            changes["instructions"] = _string(
                update["instructions"], "session.instructions", MAX_INSTRUCTIONS_CHARS
            )
        changes.update(_extensions(update))
        audio = update.get("audio", {})
        if not isinstance(audio, dict):
            raise SessionConfigError("session.audio", "session.audio must be an object")
        output = _object(audio.get("output", {}), "session.audio.output")
        for raw, param in ((update, "session.speed"), (output, "session.audio.output.speed")):
            if "speed" in raw:
                changes["speed"] = parse_speed(raw["speed"], param)
        # Both shapes are checked even when both are given; the GA one wins.
        for voice, param in (
            (update.get("voice"), "session.voice"),
            (output.get("voice"), "session.audio.output.voice"),
        ):
            if voice is not None:
                changes["voice"] = _string(voice, param, MAX_VOICE_CHARS)
        audio_input = _object(audio.get("input", {}), "session.audio.input")
        for name, raw, param in (
            ("input_format", update.get("input_audio_format"), "session.input_audio_format"),
            ("input_format", audio_input.get("format"), "session.audio.input.format"),
            ("output_format", update.get("output_audio_format"), "session.output_audio_format"),
            ("output_format", output.get("format"), "session.audio.output.format"),
        ):
            if raw is not None:
                try:
                    changes[name] = parse_audio_format(raw, param)
                except AudioFormatError as exc:
                    raise SessionConfigError(exc.param, str(exc)) from exc
        for raw, param in (
            (update, "input_audio_transcription"),  # the beta shape
            (audio_input, "transcription"),
        ):
            if param in raw:
                changes["transcription"] = parse_transcription(raw[param])
        for shape in (update, audio_input):
            if "turn_detection" in shape:
                changes["turn_detection"] = _turn_detection(
                    shape["turn_detection"], self.turn_detection
                )
        return dataclasses.replace(self, **changes)

    def check_fixed(self, updated: SessionConfig) -> None:
        """A live call's conversation, persona and recording were settled when it started."""
        for name in ("conversation", "persona", "recording"):
            if getattr(updated, name) != getattr(self, name):
                raise SessionConfigError(
                    f"session.{name}", f"session.{name} cannot be changed during a call"
                )

    def to_dict(self, session_id: str, expires_at: int | None = None) -> dict[str, Any]:
        audio_input = {
            "format": self.input_format.to_dict(),
            "transcription": self.transcription.to_dict(),
            "noise_reduction": None,
            "turn_detection": (
                turn_detection_dict(self.turn_detection) if self.turn_detection else None
            ),
        }
        if self.transcription_only:
            return {
                "type": "transcription",
                "object": "realtime.transcription_session",
                "id": session_id,
                "expires_at": expires_at,
                "include": None,
                "audio": {"input": audio_input},
            }
        return {
            "type": "realtime",
            "object": "realtime.session",
            "id": session_id,
            "model": self.model,
            "output_modalities": [self.output_modality],
            "instructions": self.instructions,
            "tools": [tool_dict(tool) for tool in self.tools],
            "tool_choice": tool_choice_value(self.tool_choice),
            "max_output_tokens": max_tokens_value(self.max_output_tokens),
            "tracing": None,
            "prompt": None,
            "expires_at": expires_at,
            "include": None,
            "audio": {
                "input": audio_input,
                "output": {
                    "format": self.output_format.to_dict(),
                    "voice": self.voice,
                    "speed": self.speed,
                },
            },
            "conversation": self.conversation,
            "persona": self.persona,
            "recording": self.recording,
        }


def response_defaults(raw: dict[str, Any], prefix: str) -> dict[str, Any]:
    """What a session and a response both set: tools, tool_choice, output modalities and
    max_output_tokens, parsed from `raw` (GA names, beta `modalities` too)."""
    changes: dict[str, Any] = {}
    if "tools" in raw:
        changes["tools"] = parse_tools(raw["tools"], f"{prefix}.tools")
    if "tool_choice" in raw:
        changes["tool_choice"] = parse_tool_choice(raw["tool_choice"], f"{prefix}.tool_choice")
    for key in ("modalities", "output_modalities"):  # the GA name last: it wins
        if key in raw:
            changes["output_modality"] = parse_modalities(raw[key], f"{prefix}.{key}")
    for key in ("max_response_output_tokens", "max_output_tokens"):
        if key in raw:
            changes["max_output_tokens"] = parse_max_tokens(raw[key], f"{prefix}.{key}")
    return changes


def parse_modalities(raw: Any, param: str) -> Modality:
    """`["audio"]` or `["text"]` (the beta `["text", "audio"]` means audio, which always
    carries its transcript); anything else is refused, never dropped."""
    if not isinstance(raw, list) or not raw:
        raise SessionConfigError(param, f"{param} must be a non-empty array")
    for index, value in enumerate(raw):
        if value not in ("audio", "text"):
            raise SessionConfigError(
                f"{param}[{index}]",
                f"Output modality {str(value)[:40]!r} is not supported; use 'audio' or 'text'",
                code="unsupported_modality",
            )
    return "audio" if "audio" in raw else "text"


def parse_max_tokens(raw: Any, param: str) -> int | None:
    if raw == "inf":
        return None
    if isinstance(raw, float) and raw.is_integer():
        raw = int(raw)  # JSON Schema counts 60.0 as an integer
    if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= MAX_OUTPUT_TOKENS:
        raise SessionConfigError(
            param, f"{param} must be an integer in [1, {MAX_OUTPUT_TOKENS}] or 'inf'"
        )
    return raw


def max_tokens_value(tokens: int | None) -> int | str:
    return "inf" if tokens is None else tokens


def parse_speed(raw: Any, param: str) -> float:
    lo, hi = SPEED_RANGE
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not lo <= raw <= hi:
        raise SessionConfigError(param, f"{param} must be a number in [{lo}, {hi}]")
    return float(raw)


def turn_detection_dict(turn: TurnDetectionConfig) -> dict[str, Any]:
    """The `turn_detection` object of a session, OpenAI's fields then Hark's."""
    hark = {
        "min_interruption_ms": turn.interruption.min_duration_ms,
        "min_interruption_words": turn.interruption.min_words,
        "false_interruption_timeout_ms": turn.interruption.false_interruption_timeout_ms,
        "echo_guard": turn.echo_guard,
        "speculative_reply": turn.speculative_reply,
    }
    common = {
        "create_response": turn.create_response,
        "interrupt_response": turn.interrupt_response,
    }
    if turn.semantic:
        return {"type": "semantic_vad", "eagerness": turn.eagerness, **common, **hark}
    return {
        "type": "server_vad",
        "threshold": turn.threshold,
        "prefix_padding_ms": turn.prefix_padding_ms,
        "silence_duration_ms": turn.silence_duration_ms,
        **common,
        "idle_timeout_ms": None,
        **hark,
    }


def _extensions(update: dict[str, Any]) -> dict[str, Any]:
    """Hark's `conversation`, `persona` and `recording` fields, checked."""
    changes: dict[str, Any] = {}
    if update.get("conversation") is not None:
        conversation = _string(update["conversation"], "session.conversation", 64)
        if not CONVERSATION_ID.fullmatch(conversation):
            raise SessionConfigError(
                "session.conversation", "session.conversation must be a conversation id (conv_…)"
            )
        changes["conversation"] = conversation
    if "persona" in update:
        persona = update["persona"]
        changes["persona"] = (
            None if persona is None else _string(persona, "session.persona", MAX_PERSONA_CHARS)
        )
    if "recording" in update:
        if not isinstance(update["recording"], bool):
            raise SessionConfigError("session.recording", "session.recording must be true or false")
        changes["recording"] = update["recording"]
    return changes


def _string(value: Any, param: str, max_len: int) -> str:
    if not isinstance(value, str):
        raise SessionConfigError(param, f"{param} must be a string")
    if len(value) > max_len:
        raise SessionConfigError(param, f"{param} is longer than {max_len} characters")
    return value


def _object(value: Any, param: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise SessionConfigError(param, f"{param} must be an object")
    return value


def _number(raw: dict[str, Any], key: str, default: float) -> float:
    lo, hi = TURN_DETECTION_RANGES[key]
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
        raise SessionConfigError(
            f"session.audio.input.turn_detection.{key}", f"{key} must be a number in [{lo}, {hi}]"
        )
    return value


def _flag(raw: dict[str, Any], key: str, default: bool) -> bool:
    value = raw.get(key, default)
    if not isinstance(value, bool):
        raise SessionConfigError(
            f"session.audio.input.turn_detection.{key}", f"{key} must be true or false"
        )
    return value


def _echo_guard(raw: dict[str, Any], default: EchoGuardMode | None) -> EchoGuardMode | None:
    """auto/on/off, true/false for on/off, or null for the server's default."""
    value = raw.get("echo_guard", default)
    if value is None or value in ECHO_GUARD_MODES:
        return value
    if isinstance(value, bool):
        return "on" if value else "off"
    raise SessionConfigError(
        "session.audio.input.turn_detection.echo_guard",
        f"echo_guard must be one of auto, on, off, true, false or null, got {value!r}",
    )


def _turn_detection(raw: Any, current: TurnDetectionConfig | None) -> TurnDetectionConfig | None:
    if raw is None:
        return None
    raw = _object(raw, "session.audio.input.turn_detection")
    base = current or TurnDetectionConfig()
    kind = raw.get("type", base.type)
    if kind not in TURN_DETECTION_TYPES:
        raise SessionConfigError(
            "session.audio.input.turn_detection.type",
            f"turn_detection type {kind!r} is not supported; "
            "use 'server_vad', 'semantic_vad' or null",
        )
    eagerness = raw.get("eagerness", base.eagerness)
    if eagerness not in EAGERNESS:
        raise SessionConfigError(
            "session.audio.input.turn_detection.eagerness",
            f"eagerness must be one of {', '.join(EAGERNESS)}",
        )
    interruption = base.interruption
    interruption = InterruptionOptions(
        min_duration_ms=int(_number(raw, "min_interruption_ms", interruption.min_duration_ms)),
        min_words=int(_number(raw, "min_interruption_words", interruption.min_words)),
        false_interruption_timeout_ms=int(
            _number(
                raw, "false_interruption_timeout_ms", interruption.false_interruption_timeout_ms
            )
        ),
    )
    return TurnDetectionConfig(
        type=kind,
        threshold=float(_number(raw, "threshold", base.threshold)),
        prefix_padding_ms=int(_number(raw, "prefix_padding_ms", base.prefix_padding_ms)),
        silence_duration_ms=int(_number(raw, "silence_duration_ms", base.silence_duration_ms)),
        eagerness=eagerness,
        create_response=_flag(raw, "create_response", base.create_response),
        interrupt_response=_flag(raw, "interrupt_response", base.interrupt_response),
        interruption=interruption,
        echo_guard=_echo_guard(raw, base.echo_guard),
        speculative_reply=_flag(raw, "speculative_reply", base.speculative_reply),
        end_of_turn=base.end_of_turn,
    )
