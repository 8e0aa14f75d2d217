"""`audio.input.format` and `audio.output.format` of a session, in OpenAI Realtime's shapes.

They matter over the WebSocket transport, where audio travels as base64 in events:
`{"type": "audio/pcm", "rate": 24000}` (little-endian PCM16, mono; the default),
`{"type": "audio/pcmu"}` and `{"type": "audio/pcma"}` (G.711 at 8 kHz). The beta names
(`"pcm16"`, `"g711_ulaw"`, `"g711_alaw"`) are accepted too. Over WebRTC the audio is Opus
on RTP whatever the session says; the format is stored and echoed all the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from media.wire_audio import WireFormat

PCM = "audio/pcm"
PCMU = "audio/pcmu"
PCMA = "audio/pcma"
G711_RATE = 8000
DEFAULT_PCM_RATE = 24000
# OpenAI takes 24 kHz only; Hark resamples anything in this range (an extension).
PCM_RATES = (8000, 48000)
BETA_NAMES = {"pcm16": PCM, "g711_ulaw": PCMU, "g711_alaw": PCMA}


class AudioFormatError(ValueError):
    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class AudioFormat:
    type: str = PCM
    rate: int = DEFAULT_PCM_RATE

    @property
    def wire(self) -> WireFormat:
        if self.type == PCMU:
            return WireFormat("ulaw", G711_RATE)
        if self.type == PCMA:
            return WireFormat("alaw", G711_RATE)
        return WireFormat("pcm16", self.rate)

    def to_dict(self) -> dict[str, Any]:
        if self.type == PCM:
            return {"type": PCM, "rate": self.rate}
        return {"type": self.type}


def parse_audio_format(raw: Any, param: str) -> AudioFormat:
    """A GA format object or a beta format name; `param` names the field in errors."""
    if isinstance(raw, str) and raw in BETA_NAMES:
        raw = {"type": BETA_NAMES[raw]}
    if not isinstance(raw, dict):
        raise AudioFormatError(
            param, f"{param} must be an object such as {{'type': 'audio/pcm', 'rate': 24000}}"
        )
    kind = raw.get("type")
    if kind not in (PCM, PCMU, PCMA):
        raise AudioFormatError(
            f"{param}.type",
            f"Unsupported audio format {str(kind)[:40]!r}; use 'audio/pcm', 'audio/pcmu' "
            "or 'audio/pcma'",
        )
    if kind != PCM:
        return AudioFormat(kind, G711_RATE)
    rate = raw.get("rate", DEFAULT_PCM_RATE)
    if isinstance(rate, float) and rate.is_integer():
        rate = int(rate)  # JSON Schema counts 24000.0 as an integer
    lo, hi = PCM_RATES
    if isinstance(rate, bool) or not isinstance(rate, int) or not lo <= rate <= hi:
        raise AudioFormatError(
            f"{param}.rate", f"audio/pcm rate must be an integer in [{lo}, {hi}] (24000 is usual)"
        )
    return AudioFormat(PCM, rate)
