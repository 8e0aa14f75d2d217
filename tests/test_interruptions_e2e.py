"""Interruptions over real WebRTC: false ones resume the reply, real ones cancel it, and
whatever the timing the session is never stuck (the next turn always gets an answer)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from server.tools.call_client import CallClient, ReceivedEvent
from tests.speech import silence, speak
from tests.test_call_e2e import connect

pytestmark = pytest.mark.slow

STORYTELLER = {"instructions": "You are a storyteller. Always answer with three long sentences."}


def utterance(text: str, lead_ms: int = 0, tail_ms: int = 1200) -> np.ndarray:
    return np.concatenate([silence(lead_ms, 48000), speak(text, 48000), silence(tail_ms, 48000)])


def transcript_of(client: CallClient, response_id: str) -> tuple[str, str]:
    """(all text the LLM wrote, the transcript.done text) of one response."""
    full = "".join(
        e.data["delta"]
        for e in client.events
        if e.type == "response.output_audio_transcript.delta"
        and e.data["response_id"] == response_id
    )
    done = next(
        e.data["transcript"]
        for e in client.events
        if e.type == "response.output_audio_transcript.done"
        and e.data["response_id"] == response_id
    )
    return full, done


async def response_done(client: CallClient, response_id: str, timeout: float = 90) -> ReceivedEvent:
    return await client.wait_for(
        "response.done", lambda d: d["response"]["id"] == response_id, timeout=timeout
    )


def played_out_before_onset(client: CallClient, response_id: str, mark: int) -> bool:
    """The reply's audio had all been sent (`output_audio_buffer.stopped`) before the
    next speech onset after `mark` was detected."""
    events = client.events
    onset = next(
        (i for i in range(mark, len(events)) if events[i].type.endswith("speech_started")),
        len(events),
    )
    return any(
        e.type == "output_audio_buffer.stopped" and e.data["response_id"] == response_id
        for e in events[:onset]
    )


async def answered_after(client: CallClient, mark: int) -> ReceivedEvent:
    """The session is not stuck: a completed, non-empty answer comes after `mark`."""
    done = await client.wait_for(
        "response.done", lambda d: d["response"]["status"] == "completed", after=mark, timeout=90
    )
    assert done.data["response"]["output"][0]["content"][0]["transcript"].strip()
    return done


async def test_a_backchannel_pauses_the_reply_which_then_resumes_and_completes(hark):
    story = utterance("Tell me a long story about a brave dragon.", lead_ms=300)
    backchannel = utterance("Uh-huh.", tail_ms=600)
    client = await connect(hark, STORYTELLER)
    try:
        await client.say(story, 48000)
        started = await client.wait_for("output_audio_buffer.started", timeout=90)
        response_id = started.data["response_id"]
        await asyncio.sleep(0.3)
        mark = len(client.events)
        await client.say(backchannel, 48000)
        paused = await client.wait_for("hark.interruption", after=mark, timeout=10)
        assert paused.data["status"] == "paused" and paused.data["response_id"] == response_id
        resumed = await client.wait_for(
            "hark.interruption", lambda d: d["status"] != "paused", after=mark, timeout=10
        )
        assert resumed.data["status"] == "resumed", resumed.data
        # The reply is audible again after the resume, and finishes whole.
        done = await response_done(client, response_id)
        assert done.data["response"]["status"] == "completed"
        full, heard = transcript_of(client, response_id)
        assert heard.strip() == full.strip()
        # What was left after the pause still reached the client (it lags the server by
        # its jitter buffer, hence the margin after response.done).
        assert client.recorder.audible_ms_between(resumed.at, done.at + 0.8) > 0
        metrics = await client.wait_for(
            "hark.metrics", lambda d: d["response_id"] == response_id, timeout=10
        )
        assert metrics.data["turn"]["false_interruptions"] >= 1
        assert metrics.data["turn"]["barge_in_stop_ms"] is not None
        assert "output_audio_buffer.cleared" not in client.types()[mark:]
        await asyncio.sleep(2.0)  # the "uh-huh" is a turn of its own, heard, not answered
        assert "response.created" not in client.types()[mark:]
    finally:
        await client.hangup()


async def test_interrupting_while_the_reply_is_still_being_thought_of(hark):
    first = utterance("What is the capital of France?", lead_ms=300, tail_ms=0)
    second = utterance("Actually, what is the capital of Italy?", tail_ms=1500)
    client = await connect(hark)
    try:
        await client.say(first, 48000)
        created = await client.wait_for("response.created", timeout=60)
        mark = len(client.events)
        await client.say(second, 48000)  # its onset arrives before any reply audio
        done = await response_done(client, created.data["response"]["id"])
        assert done.data["response"]["status"] == "cancelled"
        assert done.data["response"]["status_details"]["reason"] == "turn_detected"
        _, heard = transcript_of(client, created.data["response"]["id"])
        before_cancel = client.types()[: client.events.index(done)]
        if "output_audio_buffer.started" not in before_cancel:
            assert heard == ""  # nothing was played, so nothing was heard
        await answered_after(client, mark)
        heard_second = await client.wait_for(
            "conversation.item.input_audio_transcription.completed", after=mark
        )
        assert "italy" in heard_second.data["transcript"].lower()
    finally:
        await client.hangup()


@pytest.mark.parametrize("delay_s", [0.15, 0.9])
async def test_two_interruptions_in_a_row_then_an_answer(hark, delay_s):
    """Barge in early (first clause) or later (usually between or in later clauses), on
    two consecutive replies; each is cancelled, and the third question is answered."""
    story = utterance("Tell me a long story about a brave dragon.", lead_ms=300)
    again = utterance("No, tell me a long story about a clever fox instead.")
    last = utterance("Stop. What is the capital of France?", tail_ms=1500)
    client = await connect(hark, STORYTELLER)
    try:
        await client.say(story, 48000)
        for interruption in (again, last):
            mark = len(client.events)
            started = await client.wait_for("output_audio_buffer.started", after=mark, timeout=90)
            await asyncio.sleep(delay_s)
            response_id = started.data["response_id"]
            mark = len(client.events)
            await client.say(interruption, 48000)
            done = await response_done(client, response_id)
            # A short reply may have played out before the barge-in's onset reached the
            # server; one still playing then must be cancelled.
            if not played_out_before_onset(client, response_id, mark):
                assert done.data["response"]["status"] == "cancelled"
            full, heard = transcript_of(client, started.data["response_id"])
            assert full.startswith(heard)
        await answered_after(client, mark)
        asked = await client.wait_for(
            "conversation.item.input_audio_transcription.completed", after=mark
        )
        assert "capital" in asked.data["transcript"].lower()
    finally:
        await client.hangup()


async def test_a_real_interruption_right_after_a_resume_is_honoured(hark):
    story = utterance("Tell me a long story about a brave dragon.", lead_ms=300)
    backchannel = utterance("Yeah.", tail_ms=0)
    stop = utterance("Stop. What is two plus two?", tail_ms=1500)
    client = await connect(hark, STORYTELLER)
    try:
        await client.say(story, 48000)
        started = await client.wait_for("output_audio_buffer.started", timeout=90)
        await asyncio.sleep(0.5)
        mark = len(client.events)
        await client.say(backchannel, 48000)
        await client.wait_for(
            "hark.interruption", lambda d: d["status"] == "resumed", after=mark, timeout=10
        )
        await client.say(stop, 48000)
        done = await response_done(client, started.data["response_id"])
        assert done.data["response"]["status"] == "cancelled"
        await answered_after(client, mark)
    finally:
        await client.hangup()
