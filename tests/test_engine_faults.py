"""How a reply survives a failing engine: an `error` event with the fault's code, the
apology spoken (through the TTS, or the stored clip when the TTS is what failed), a
`failed` response naming the fault, and what the caller heard kept as the transcript.

The engines here are fakes named as such (a scripted LLM that fails on cue, a tone TTS
that can be made to fail), so each fault is exact; the real servers are in
tests/test_engine_faults_e2e.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import numpy as np
import pytest

from server.engines.chat import LLMRequest
from server.engines.faults import APOLOGY, Clip, EngineFault, render_apology
from server.protocol.conversation import Conversation
from server.reply.response import ResponseRun
from server.reply.spec import ReplySpec
from server.turns.timings import TurnTimings

RATE = 16_000


class ScriptedFailingLLM:
    """Yields `words`, then raises `fault` (if any)."""

    name = "fake-llm"

    def __init__(self, words: list[str], fault: Exception | None = None) -> None:
        self.words = words
        self.fault = fault

    async def load(self) -> None:
        pass

    async def stream(self, request: LLMRequest) -> AsyncIterator[str]:
        for word in self.words:
            yield word
            await asyncio.sleep(0)
        if self.fault is not None:
            raise self.fault


class ToneFakeTTS:
    """0.2 s of tone per text; raises for texts while `broken`."""

    name = "fake-tts"
    sample_rate = RATE

    def __init__(self, broken: bool = False) -> None:
        self.broken = broken
        self.texts: list[str] = []

    async def load(self) -> None:
        pass

    async def synthesize(
        self, text: str, voice: str | None = None, speed: float = 1.0
    ) -> AsyncIterator[np.ndarray]:
        self.texts.append(text)
        if self.broken:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        await asyncio.sleep(0)
        yield (np.sin(np.arange(RATE // 5) * 0.3) * 9000).astype(np.int16)


class RecordingFakeTrack:
    """Keeps what the reply queues; drains at once."""

    def __init__(self) -> None:
        self.response_id: str | None = None
        self.pushed: list[np.ndarray] = []

    def begin_response(self, response_id: str) -> None:
        self.response_id = response_id

    queued_ms = 0  # played at once

    def push(self, pcm: np.ndarray, rate: int) -> None:
        self.pushed.append(pcm)

    def end_response(self) -> None:
        pass

    async def wait_drained(self) -> None:
        pass

    def clear(self) -> int:
        return 0


async def reply(
    llm: ScriptedFailingLLM, tts: ToneFakeTTS, apology: Clip | None = None
) -> tuple[ResponseRun, RecordingFakeTrack, list[dict]]:
    track = RecordingFakeTrack()
    events: list[dict] = []
    done = asyncio.Event()
    run = ResponseRun(
        response_id="resp_fault",
        conversation=Conversation(),
        llm=llm,  # type: ignore[arg-type]
        tts=tts,  # type: ignore[arg-type]
        track=track,  # type: ignore[arg-type]
        emit=events.append,
        spec=ReplySpec(LLMRequest("", ()), voice="joe"),
        timings=TurnTimings(),
        on_finished=lambda _: done.set(),
        apology=apology,
    )
    run.start()
    await asyncio.wait_for(done.wait(), 5)
    return run, track, events


def of_type(events: list[dict], kind: str) -> list[dict]:
    return [e for e in events if e["type"] == kind]


async def test_an_llm_that_never_answers_gets_an_error_and_a_spoken_apology() -> None:
    timeout = EngineFault("llm", "llm_timeout", "http://llm/v1 sent no first token within 5 s")
    tts = ToneFakeTTS()
    run, track, events = await reply(ScriptedFailingLLM([], timeout), tts)
    [error] = of_type(events, "error")
    assert error["error"]["code"] == "llm_timeout"
    assert "no first token" in error["error"]["message"]
    assert tts.texts == [APOLOGY]  # said through the TTS, which still works
    assert len(track.pushed) == 1
    [done] = of_type(events, "response.done")
    assert done["response"]["status"] == "failed"
    assert done["response"]["status_details"]["error"]["code"] == "llm_timeout"
    assert run.item.text == APOLOGY  # the transcript is what the caller heard
    assert run.fault is timeout
    # The error comes before the apology's words, so a client can show both in order.
    kinds = [e["type"] for e in events]
    assert kinds.index("error") < kinds.index("response.output_audio_transcript.delta")


async def test_a_stream_cut_mid_reply_keeps_what_was_said_then_apologizes() -> None:
    cut = EngineFault("llm", "llm_stream_cut", "http://llm/v1 ended its stream early")
    words = ["Paris", " is", " the", " capital", " of", " France.", " It", " is"]
    tts = ToneFakeTTS()
    run, track, events = await reply(ScriptedFailingLLM(words, cut), tts)
    assert len(track.pushed) == 3  # the two clauses spoken, then the apology
    assert tts.texts[-1] == APOLOGY
    assert tts.texts[:-1] == ["Paris is the capital", "of France."]
    # "It is" was written but never said (no clause of it was complete): not kept.
    assert run.item.text == f"Paris is the capital of France. {APOLOGY}"
    assert of_type(events, "response.done")[0]["response"]["status"] == "failed"


async def test_any_llm_exception_is_a_fault_of_the_llm() -> None:
    run, _, events = await reply(
        ScriptedFailingLLM(["Hello"], ConnectionResetError("reset by peer")), ToneFakeTTS()
    )
    assert of_type(events, "error")[0]["error"]["code"] == "llm_failed"
    assert run.fault is not None and run.fault.stage == "llm"


async def test_a_failing_tts_plays_the_stored_apology() -> None:
    clip = Clip(APOLOGY, np.full(RATE // 2, 1234, np.int16), RATE)
    tts = ToneFakeTTS(broken=True)
    run, track, events = await reply(ScriptedFailingLLM(["Paris", " is", " lovely."]), tts, clip)
    [error] = of_type(events, "error")
    assert error["error"]["code"] == "tts_failed"
    assert "illegal memory access" in error["error"]["message"]
    assert tts.texts == ["Paris is lovely."]  # the TTS is not asked again: it is broken
    assert len(track.pushed) == 1 and track.pushed[0] is clip.pcm
    assert run.item.text == APOLOGY
    assert run.fault is not None and run.fault.stage == "tts"


async def test_with_no_stored_clip_a_broken_tts_still_ends_the_reply() -> None:
    run, track, events = await reply(ScriptedFailingLLM(["Hi."]), ToneFakeTTS(broken=True))
    assert track.pushed == []
    assert of_type(events, "error")[0]["error"]["code"] == "tts_failed"
    assert run.status == "failed" and run.item.text == ""


async def test_the_apology_clip_is_rendered_by_the_tts() -> None:
    clip = await render_apology(ToneFakeTTS())
    assert clip is not None and clip.text == APOLOGY and clip.sample_rate == RATE
    assert len(clip.pcm) == RATE // 5
    assert await render_apology(ToneFakeTTS(broken=True)) is None


@pytest.mark.slow
async def test_piper_renders_the_apology_at_start_up() -> None:
    from server.engines.piper_tts import PiperTTS

    tts = PiperTTS()
    await tts.load()
    clip = await render_apology(tts)
    assert clip is not None and 1.0 < len(clip.pcm) / clip.sample_rate < 4.0
