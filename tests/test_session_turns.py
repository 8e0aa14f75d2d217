"""A call's session in-process, without a peer: what a committed turn sends the client.

The engines are fakes named so (an STT that fails or answers a fixed transcript, an LLM
that must never be asked); the VAD is the real packaged Silero. Events are read from the
transport's queue (no data channel is open, so they wait there in order).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest

from media.vad import SileroModel
from server.call.session import RealtimeSession
from server.engines.base import Engines, Transcript
from server.engines.chat import LLMRequest
from server.protocol.session_config import SessionConfig
from server.turns.timings import TurnTimings


class FakeSTT:
    name = "fake-stt"

    def __init__(self, text: str | None) -> None:
        self.text = text  # None: the engine fails

    async def load(self) -> None:
        pass

    async def transcribe(self, audio: np.ndarray) -> str:
        return (await self.transcribe_detailed(audio)).text

    async def transcribe_detailed(
        self, audio: np.ndarray, language: str | None = None
    ) -> Transcript:
        if self.text is None:
            raise RuntimeError("the speech-to-text server went away")
        return Transcript(self.text, 0.01, -0.2, len(audio) / 16000)


class FakeNeverAskedLLM:
    """Fails the test if a reply is ever started."""

    name = "fake-never-asked"

    async def load(self) -> None:
        pass

    async def stream(self, request: LLMRequest) -> AsyncIterator[str]:
        raise AssertionError("no reply was expected")
        yield ""


@pytest.fixture(scope="module")
def vad() -> SileroModel:
    return SileroModel.load()


def session_for(vad: SileroModel, stt: FakeSTT, config: SessionConfig) -> RealtimeSession:
    engines = Engines(stt=stt, llm=FakeNeverAskedLLM(), tts=None)  # type: ignore[arg-type]
    return RealtimeSession(
        "rtc_test", engines, vad, config, max_event_bytes=65536, ice_timeout_s=30,
        on_closed=lambda _: None, append_burst_s=20.0,
    )  # fmt: skip


def sent(session: RealtimeSession) -> list[dict[str, Any]]:
    return [json.loads(raw) for raw in session.transport._pending]


async def commit_turn(session: RealtimeSession) -> None:
    audio = np.zeros(16000, np.int16)
    session.user_turns._commit("item_turn", audio, TurnTimings(), True, None, False)
    for _ in range(100):
        if not session.user_turns.in_flight:
            return
        await asyncio.sleep(0.01)


async def test_a_failed_transcription_is_reported_on_its_item_and_not_answered(vad) -> None:
    """In a transcription session (a realtime one also says a spoken apology: see
    tests/test_engine_faults_e2e.py)."""
    session = session_for(vad, FakeSTT(None), SessionConfig().apply({"type": "transcription"}))
    try:
        await commit_turn(session)
        events = sent(session)
        failed = [e for e in events if e["type"].endswith("input_audio_transcription.failed")]
        assert len(failed) == 1
        assert failed[0]["item_id"] == "item_turn" and failed[0]["content_index"] == 0
        assert failed[0]["error"]["code"] == "transcription_failed"
        assert "went away" in failed[0]["error"]["message"]
        assert not any(e["type"].startswith("response.") for e in events)
    finally:
        await session.close()


async def test_a_transcription_session_streams_partials_and_never_responds(vad) -> None:
    config = SessionConfig().apply({"type": "transcription"})
    session = session_for(vad, FakeSTT("What is the capital of France?"), config)
    try:
        session.on_speech_started(0)
        item_id = session.user_turns.item_id
        for partial in (
            "What is the",
            "What is the capital of",
            "Whatever",
            "What is the capital of",
        ):
            session.partial_transcript(partial)
        session.speculate("What is the capital of")  # a realtime session would begin a reply
        deltas = [e for e in sent(session) if e["type"].endswith("transcription.delta")]
        # Deltas extend what was sent; a revision that does not is left to `.completed`.
        assert [d["delta"] for d in deltas] == ["What is the", " capital of"]
        assert all(d["item_id"] == item_id for d in deltas)
        await commit_turn(session)
        events = sent(session)
        completed = [e for e in events if e["type"].endswith("transcription.completed")]
        assert completed[0]["transcript"] == "What is the capital of France?"
        assert not any(e["type"].startswith("response.") for e in events)
        assert session.replies.current is None and not session.replies.speculation.pending
    finally:
        await session.close()
