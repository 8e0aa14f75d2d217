"""What one reply is asked to be: the LLM request, how it is delivered, where it goes.

Built by the call from the session's settings and a `response.create`'s overrides, and
frozen and hashable: a reply begun at a pause is released only for exactly the same
spec (`server.reply.speculation`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from server.engines.chat import LLMRequest
from server.protocol.audio_format import AudioFormat
from server.protocol.response_events import ResponseShape
from server.protocol.session_config import Modality


@dataclass(frozen=True)
class ReplySpec:
    request: LLMRequest
    voice: str = "joe"
    speed: float = 1.0
    modality: Modality = "audio"
    in_conversation: bool = True  # False: out of band (`conversation: "none"`)
    metadata: tuple[tuple[str, str], ...] | None = None
    conversation_id: str | None = None
    output_format: AudioFormat = field(default_factory=AudioFormat)

    @property
    def spoken(self) -> bool:
        return self.modality == "audio"

    def shape(self, response_id: str) -> ResponseShape:
        return ResponseShape(
            id=response_id,
            voice=self.voice,
            modality=self.modality,
            in_conversation=self.in_conversation,
            metadata=None if self.metadata is None else dict(self.metadata),
            max_output_tokens=self.request.max_tokens,
            conversation_id=self.conversation_id,
            output_format=self.output_format.to_dict(),
        )
