"""End to end over real WebRTC: a real server with the packaged models, an aiortc client
speaking real (Piper) speech, and the reply heard back on the audio track."""

from __future__ import annotations

import asyncio
import difflib
import re

import numpy as np
import pytest

from server.tools.call_client import CallClient, mint_client_secret
from tests.speech import silence, speak

pytestmark = pytest.mark.slow

QUESTION = "What is the capital of France?"


def words(text: str) -> str:
    return re.sub(r"[^a-z0-9 ]", "", text.lower())


def word_match(heard: str, said: str) -> float:
    """How much of what was said was heard, word by word in order (1.0: all of it)."""
    matcher = difflib.SequenceMatcher(a=said.split(), b=heard.split())
    return sum(block.size for block in matcher.get_matching_blocks()) / len(said.split())


async def connect(hark, session: dict | None = None) -> CallClient:
    token = await mint_client_secret(hark.url, hark.api_key, session)
    client = CallClient(hark.url, token)
    await client.connect()
    return client


def utterance(text: str, lead_ms: int = 300, tail_ms: int = 1000) -> np.ndarray:
    return np.concatenate([silence(lead_ms, 48000), speak(text, 48000), silence(tail_ms, 48000)])


async def test_spoken_question_gets_a_spoken_answer(hark):
    question = utterance(QUESTION)  # before connecting: Piper blocks the loop
    client = await connect(hark)
    try:
        speech_end = await client.say(question, 48000)
        heard = await client.wait_for(
            "conversation.item.input_audio_transcription.completed", timeout=60
        )
        transcript = words(heard.data["transcript"])
        # The question was heard: its words in order, allowing Whisper tiny one slip
        # ("capital of friends" on a loaded machine); a wrong or empty turn fails.
        assert word_match(transcript, words(QUESTION)) >= 0.8, transcript

        done = await client.wait_for("response.done", timeout=90)
        response = done.data["response"]
        assert response["status"] == "completed"
        item = response["output"][0]
        assert item["role"] == "assistant" and item["content"][0]["type"] == "output_audio"
        reply = item["content"][0]["transcript"]
        assert reply.strip(), "the assistant said nothing"

        deltas = "".join(
            e.data["delta"]
            for e in client.events
            if e.type == "response.output_audio_transcript.delta"
        )
        assert deltas.strip() == reply.strip()

        types = client.types()
        for expected in (
            "session.created",
            "input_audio_buffer.speech_started",
            "input_audio_buffer.speech_stopped",
            "input_audio_buffer.committed",
            "conversation.item.added",
            "response.created",
            "output_audio_buffer.started",
            "output_audio_buffer.stopped",
            "response.output_audio.done",
            "response.output_audio_transcript.done",
            "conversation.item.done",
            "hark.metrics",
        ):
            assert expected in types, f"{expected} missing from {types}"
        assert types.index("output_audio_buffer.stopped") < types.index("response.done")
        assert all("event_id" in e.data for e in client.events)

        await asyncio.sleep(0.3)
        first = client.recorder.first_audible_after(speech_end)
        assert first is not None, "no reply audio arrived on the track"
        audible = client.recorder.audible_ms_between(speech_end, first + 30)
        assert audible >= 500, f"only {audible} ms of audible reply audio"
    finally:
        await client.hangup()


async def test_typed_message_gets_a_spoken_answer(hark):
    client = await connect(hark)
    try:
        mark = len(client.events)
        client.send(
            {
                "type": "conversation.item.create",
                "item": {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": "Say hello to me."}],
                },
            }
        )
        client.send({"type": "response.create"})
        added = await client.wait_for("conversation.item.added", after=mark)
        assert added.data["item"]["content"][0] == {
            "type": "input_text",
            "text": "Say hello to me.",
        }
        done = await client.wait_for("response.done", after=mark, timeout=90)
        assert done.data["response"]["status"] == "completed"
        assert client.recorder.last_audible() is not None
    finally:
        await client.hangup()


async def test_barge_in_cancels_and_keeps_only_what_was_heard(hark):
    story = utterance("Tell me a long story about a brave dragon and a knight.")
    interruption = utterance("Stop. What is two plus two?", lead_ms=0, tail_ms=1500)
    client = await connect(
        hark,
        {"instructions": "You are a storyteller. Always answer with three long sentences."},
    )
    try:
        await client.say(story, 48000)
        started = await client.wait_for("output_audio_buffer.started", timeout=90)
        await asyncio.sleep(0.5)  # let some of the reply be heard
        mark = len(client.events)
        interruption_end = await client.say(interruption, 48000)

        onset = await client.wait_for("input_audio_buffer.speech_started", after=mark, timeout=10)
        cleared = await client.wait_for("output_audio_buffer.cleared", after=mark, timeout=10)
        done = await client.wait_for(
            "response.done", lambda d: d["response"]["status"] == "cancelled", timeout=10
        )
        assert done.data["response"]["status_details"]["reason"] == "turn_detected"
        assert onset.at <= cleared.at

        response_id = done.data["response"]["id"]
        full = "".join(
            e.data["delta"]
            for e in client.events
            if e.type == "response.output_audio_transcript.delta"
            and e.data["response_id"] == response_id
        )
        heard = next(
            e.data["transcript"]
            for e in client.events
            if e.type == "response.output_audio_transcript.done"
            and e.data["response_id"] == response_id
        )
        assert heard and full.startswith(heard) and len(heard) < len(full.rstrip()), (heard, full)

        item_id = done.data["response"]["output"][0]["id"]
        client.send({"type": "conversation.item.retrieve", "item_id": item_id})
        stored = await client.wait_for("conversation.item.retrieved", after=mark)
        assert stored.data["item"]["content"][0]["transcript"] == heard
        assert stored.data["item"]["status"] == "incomplete"

        # The bot went silent: paused at the onset, then cleared, nothing audible until the
        # user has finished the interruption (the next reply cannot start before that).
        await client.finish_saying()
        quiet_from = onset.at + 0.3
        assert interruption_end - quiet_from > 0.5  # time enough for stale audio to show
        assert client.recorder.audible_ms_between(quiet_from, interruption_end) == 0
        assert started.at < cleared.at

        # Not stuck: the interruption itself gets an answer.
        answer = await client.wait_for(
            "response.done",
            lambda d: d["response"]["status"] == "completed",
            after=mark,
            timeout=90,
        )
        assert answer.data["response"]["output"][0]["content"][0]["transcript"].strip()
    finally:
        await client.hangup()


async def test_a_reply_begun_at_a_pause_is_dropped_when_the_user_goes_on(hark):
    """The pause after a whole question starts its reply, held; the user goes on, so that
    reply must never show: one turn, one response, answering the whole of it."""
    first = utterance("What is the capital of France?", tail_ms=0)
    second = utterance("And what is the capital of Germany?", lead_ms=600, tail_ms=1500)
    turn = {"type": "server_vad", "silence_duration_ms": 1200}
    client = await connect(hark, {"audio": {"input": {"turn_detection": turn}}})
    try:
        await client.say(np.concatenate([first, second]), 48000)
        done = await client.wait_for("response.done", timeout=90)
        assert done.data["response"]["status"] == "completed"
        await asyncio.sleep(1.0)
        types = client.types()
        assert types.count("response.created") == 1, types
        assert types.count("conversation.item.input_audio_transcription.completed") == 1
        heard = next(
            e.data["transcript"]
            for e in client.events
            if e.type == "conversation.item.input_audio_transcription.completed"
        )
        assert "france" in words(heard) and "germany" in words(heard), heard
        metrics = await client.wait_for("hark.metrics", timeout=5)
        # The reply that went out was begun at the final pause, not the dropped one.
        assert metrics.data["turn"]["speculative"] is True
        assert metrics.data["turn"]["dropped_replies"] >= 1  # the one begun after "France?"
        assert metrics.data["turn"]["response_start_ms"] > 0
    finally:
        await client.hangup()
