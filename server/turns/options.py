"""Turn-taking options: how a turn ends and how an interruption is judged, with the one set
of defaults.

`TurnDetectionConfig` is OpenAI's `server_vad` / `semantic_vad` plus Hark's extensions,
as the turn-taking code uses it; `server.protocol.session_config` parses and renders its
wire shape, `server.config` only overrides what an operator set. Every default is
written here and nowhere else.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

from media.segmenter import TurnDetection
from server.config import Config
from server.turns.end_of_turn import Eagerness, max_wait_ms

TurnDetectionType = Literal["server_vad", "semantic_vad"]
TURN_DETECTION_TYPES: tuple[TurnDetectionType, ...] = ("server_vad", "semantic_vad")
# What judges a pause under semantic_vad: the words (`end_of_turn`) or the audio
# (`smart_turn`, Smart Turn v3.2).
EndOfTurnJudge = Literal["semantic", "smart_turn"]
# How the bot's own voice in the caller's audio is handled (`server.turns.echo_mode`):
# `auto` finds out per call whether the client sends it back, `on` always gates it
# (a client known to have no echo canceller), `off` never looks.
EchoGuardMode = Literal["auto", "on", "off"]
ECHO_GUARD_MODES: tuple[EchoGuardMode, ...] = ("auto", "on", "off")


@dataclass(frozen=True)
class InterruptionOptions:
    """When speech over a reply is a real interruption (`server.turns.interruption`)."""

    min_duration_ms: int = 1000
    min_words: int = 1
    false_interruption_timeout_ms: int = 2000

    def __post_init__(self) -> None:
        for name in ("min_duration_ms", "min_words", "false_interruption_timeout_ms"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}")


@dataclass(frozen=True)
class TurnDetectionConfig:
    """OpenAI's `server_vad` / `semantic_vad`, plus Hark's false-interruption options.

    `semantic_vad` ends a turn after a pause whose length depends on whether the words
    so far sound finished (`server.turns.end_of_turn`); `server_vad` after a fixed silence.
    """

    type: TurnDetectionType = "server_vad"
    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500
    eagerness: Eagerness = "auto"
    create_response: bool = True
    interrupt_response: bool = True
    interruption: InterruptionOptions = field(default_factory=InterruptionOptions)
    # Hark extension: "auto" (detect per call whether the client returns the bot's voice),
    # "on" (a client without echo cancellation, such as smart glasses) or "off"; null
    # leaves it to the server's HARK_ECHO_GUARD (default "auto").
    echo_guard: EchoGuardMode | None = None
    # Hark extension: begin the reply at a pause that may end the turn, held until it does
    # (`server.reply.response`); off saves the CPU spent on pauses that were not the end.
    speculative_reply: bool = True
    # Hark's server setting HARK_END_OF_TURN (not on the wire): what judges a pause.
    end_of_turn: EndOfTurnJudge = "semantic"

    @property
    def semantic(self) -> bool:
        return self.type == "semantic_vad"

    def segmenter_params(self) -> TurnDetection:
        silence = max_wait_ms(self.eagerness) if self.semantic else self.silence_duration_ms
        return TurnDetection(self.threshold, self.prefix_padding_ms, silence)


def server_turn_detection(config: Config) -> TurnDetectionConfig:
    """The turn detection of a new session on this server: these defaults, with the
    operator's `HARK_TURN_DETECTION` and interruption overrides."""
    defaults = InterruptionOptions()
    interruption = dataclasses.replace(
        defaults,
        min_duration_ms=_or(config.min_interruption_ms, defaults.min_duration_ms),
        false_interruption_timeout_ms=_or(
            config.false_interruption_timeout_ms, defaults.false_interruption_timeout_ms
        ),
    )
    kind: TurnDetectionType = (
        "semantic_vad" if config.turn_detection == "semantic_vad" else ("server_vad")
    )
    judge: EndOfTurnJudge = "smart_turn" if config.end_of_turn == "smart_turn" else "semantic"
    return TurnDetectionConfig(type=kind, interruption=interruption, end_of_turn=judge)


def _or(value: int | None, default: int) -> int:
    return default if value is None else value
