"""When an engine fails mid-call: what went wrong, said in one shape, and the apology.

An LLM server that is down, frozen, answering 5xx or cutting its stream, a TTS or STT
that raises: none of it may end the call. The reply side turns each into an
`EngineFault` (which stage, a stable code for clients and operators), tells the client
with an `error` event, and says a short apology instead of leaving the caller in
silence: through the TTS when it still works, else the clip rendered at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

Stage = Literal["stt", "llm", "tts"]

APOLOGY = "Sorry, I can't answer right now."


class EngineFault(RuntimeError):
    """An engine failed. `code`: llm_unavailable, llm_timeout, llm_error, llm_stream_cut,
    llm_failed, tts_failed or stt_failed."""

    def __init__(self, stage: Stage, code: str, message: str) -> None:
        super().__init__(message)
        self.stage: Stage = stage
        self.code = code
        self.message = message


def as_fault(exc: BaseException, stage: Stage) -> EngineFault:
    """`exc` as a fault of `stage` (an engine's own fault keeps its code)."""
    if isinstance(exc, EngineFault):
        return exc
    return EngineFault(stage, f"{stage}_failed", f"{type(exc).__name__}: {exc}")


@dataclass(frozen=True)
class Clip:
    """Audio said ahead of time: mono int16 at `sample_rate`."""

    text: str
    pcm: np.ndarray
    sample_rate: int


async def render_apology(tts: object) -> Clip | None:
    """The apology through `tts`, kept for when the TTS itself fails; None if it cannot."""
    synthesize = getattr(tts, "synthesize", None)
    if synthesize is None:
        return None
    try:
        chunks = [chunk async for chunk in synthesize(APOLOGY)]
    except Exception:
        return None
    if not chunks:
        return None
    return Clip(APOLOGY, np.concatenate(chunks).astype(np.int16), int(tts.sample_rate))  # type: ignore[attr-defined]
