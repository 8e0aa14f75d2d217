"""A reply begun speculatively at the user's pause: held, then released or discarded.

The LLM, TTS and track are the fakes of tests/test_response_pacing.py (scripted deltas,
tones of known length, a recording track), so what reaches the client is exact.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from server.engines.chat import ChatMessage, LLMRequest
from server.protocol.conversation import Conversation
from server.reply.response import ResponseRun
from server.reply.spec import ReplySpec
from server.turns.timings import TurnTimings
from tests.test_response_pacing import FakeLLM, FakeTrack, FakeTTS


class Rig:
    def __init__(self, llm: Any) -> None:
        self.events: list[dict[str, Any]] = []
        self.finished = asyncio.Event()
        self.conversation = Conversation()
        self.track = FakeTrack()
        self.run = ResponseRun(
            response_id="resp_spec",
            conversation=self.conversation,
            llm=llm,
            tts=FakeTTS(llm if isinstance(llm, FakeLLM) else FakeLLM([]), delay=0.01),  # type: ignore[arg-type]
            track=self.track,  # type: ignore[arg-type]
            emit=self.events.append,
            spec=ReplySpec(
                LLMRequest("", (ChatMessage("user", "What is the capital of France?"),)),
                voice="alloy",
            ),
            timings=TurnTimings(),
            on_finished=lambda _: self.finished.set(),
            held=True,
        )

    def types(self) -> list[str]:
        return [e["type"] for e in self.events]


async def test_a_held_reply_shows_nothing_until_released_then_everything_in_order() -> None:
    rig = Rig(FakeLLM(["Paris", " is", " the", " capital", " of", " France."]))
    rig.run.start()
    await asyncio.sleep(0.2)  # generated and synthesized meanwhile
    assert rig.events == [] and rig.track.pushed == [] and len(rig.conversation) == 0
    assert rig.track.response_id is None and rig.run.held
    turn = TurnTimings(speech_end=1.0, speech_stopped=1.25)
    assert rig.run.adopt_turn(turn) and rig.run.release()
    await asyncio.wait_for(rig.finished.wait(), 5)
    types = rig.types()
    assert types[0] == "response.created"  # as if it had started now
    assert types.index("response.output_audio_transcript.delta") > types.index(
        "response.content_part.added"
    )
    assert types[-2:] == ["response.done", "hark.metrics"]
    assert rig.track.response_id == "resp_spec" and len(rig.track.pushed) == 2
    assert rig.run.status == "completed" and rig.run.item.text == "Paris is the capital of France."
    assert rig.conversation.last_id == rig.run.item.id
    metrics = rig.events[-1]["turn"]
    assert metrics["speculative"] is True and metrics["vad_wait_ms"] == 250.0


async def test_a_discarded_reply_leaves_no_trace() -> None:
    rig = Rig(FakeLLM(["Paris", " is", " the", " capital", " of", " France."]))
    rig.run.start()
    await asyncio.sleep(0.05)
    rig.run.discard()
    await asyncio.sleep(0.2)
    assert rig.events == [] and rig.track.pushed == [] and len(rig.conversation) == 0
    assert not rig.finished.is_set() and rig.run.status == "discarded"
    assert not rig.run.release()  # too late: the turn's end starts a fresh reply


class BrokenLLM:
    name = "broken-llm"

    async def load(self) -> None:
        pass

    async def stream(self, request: LLMRequest) -> AsyncIterator[str]:
        yield "Paris"
        raise RuntimeError("the model server went away")


async def test_a_held_reply_that_failed_is_not_released() -> None:
    rig = Rig(BrokenLLM())
    rig.run.start()
    await asyncio.sleep(0.1)
    assert not rig.run.release()
    assert rig.events == [] and rig.track.pushed == []
