"""TurnTaking with HARK_END_OF_TURN=smart_turn: the audio, not the words, sets the wait.

Real Piper speech and the real Smart Turn model; the VAD scores and the transcript are
scripted (tests.test_turn_taking's fakes), and the transcript says the opposite of the
audio, so each test shows which judge decided.
"""

from __future__ import annotations

import asyncio
import dataclasses

import numpy as np
import pytest

from server.turns.end_of_turn import WAITS
from server.turns.smart_turn import SmartTurn
from server.turns.turn_taking import TurnTaking
from tests.speech import speak
from tests.test_turn_taking import Clock, FakeHost, FakeSTT, FakeVad, semantic

QUESTION = "What is the capital of France?"


@pytest.fixture(scope="module")
def model() -> SmartTurn:
    return SmartTurn.installed()


class SpeechRig:
    """Pushes real 32 ms frames; the scripted VAD says speech while the audio is speech."""

    def __init__(self, model: SmartTurn | None, transcript: str, judge: str) -> None:
        config = dataclasses.replace(semantic(), end_of_turn=judge)
        self.vad, self.clock, self.host = FakeVad(), Clock(), FakeHost()
        self.turns = TurnTaking(
            self.vad,  # type: ignore[arg-type]
            FakeSTT(text=transcript),
            config,
            self.host,  # type: ignore[arg-type]
            clock=self.clock,
            smart_turn=model,
        )
        self.ms = 0

    async def feed(self, pcm: np.ndarray, probability: float) -> None:
        for start in range(0, len(pcm) - 511, 512):
            self.vad.next = probability
            self.ms += 32
            self.clock.t += 0.032
            self.turns.push(pcm[start : start + 512], self.ms)
            await asyncio.sleep(0)

    async def pause(self, ms: int) -> None:
        """Silence: the first 96 ms make the pause, then the judges get real time."""
        await self.feed(np.zeros(96 * 16, np.int16), 0.0)
        for _ in range(200):  # Smart Turn runs on its own thread (~100 ms)
            await asyncio.sleep(0.01)
            verdict = self.turns._verdict
            if verdict is None or verdict.done():
                break
        await asyncio.sleep(0.01)
        await self.feed(np.zeros((ms - 96) * 16, np.int16), 0.0)


async def test_a_finished_sounding_turn_ends_at_the_short_wait(model):
    # The words look unfinished (2.5 s by the rules), the audio sounds finished.
    rig = SpeechRig(model, "What is the capital of", "smart_turn")
    await rig.feed(speak(QUESTION), 0.9)
    await rig.pause(WAITS["auto"].complete + 160)
    assert rig.host.log == ["started", "ended"]


async def test_a_turn_cut_mid_sentence_is_waited_for(model):
    whole = speak(QUESTION)
    # The words look finished (250 ms by the rules), the audio is cut off.
    rig = SpeechRig(model, QUESTION, "smart_turn")
    await rig.feed(whole[: int(len(whole) * 0.7)], 0.9)
    await rig.pause(WAITS["auto"].unsure)
    assert rig.host.log == ["started"]
    await rig.feed(np.zeros(WAITS["auto"].incomplete * 16, np.int16), 0.0)
    assert rig.host.log == ["started", "ended"]


async def test_the_word_rules_judge_when_the_setting_says_semantic(model):
    rig = SpeechRig(model, "What is the capital of", "semantic")
    await rig.feed(speak(QUESTION), 0.9)
    await rig.pause(WAITS["auto"].complete + 160)
    assert rig.host.log == ["started"]  # the words look unfinished: still waiting
    assert rig.turns._verdict is None  # the model was never asked
