"""Echo-proof listening over real WebRTC: a client with no echo cancellation plays the
bot's reply back into its own microphone (200-300 ms later, -6 to -12 dB). The bot must
not interrupt itself, yet a real user talking over the echo still interrupts it."""

from __future__ import annotations

import asyncio

import pytest

from server.tools.call_client import CallClient
from tests.acoustic import EchoingMicrophone, utterance
from tests.bench.peers.hark import HarkPeer

pytestmark = pytest.mark.slow


# A client without echo cancellation says so in its session (Hark's `echo_guard: "on"`,
# over the server's default "auto"), so this also proves the per-call switch.
STORYTELLER = {
    "instructions": "You are a storyteller. Always answer with three long sentences.",
    "audio": {"input": {"turn_detection": {"type": "semantic_vad", "echo_guard": True}}},
}


async def echo_call(hark, delay_ms: float, gain_db: float) -> tuple[CallClient, EchoingMicrophone]:
    mic = EchoingMicrophone(delay_ms=delay_ms, gain_db=gain_db)
    call = await HarkPeer(hark.url, hark.api_key, STORYTELLER).call(mic)
    call.ear.listeners.append(mic.hear)
    return call.client, mic


@pytest.mark.parametrize(("delay_ms", "gain_db"), [(200, -6), (300, -12)])
async def test_the_bot_does_not_interrupt_itself_through_its_echo(hark, delay_ms, gain_db):
    question = utterance("Tell me a story about a brave dragon.")
    client, mic = await echo_call(hark, delay_ms, gain_db)
    try:
        for _ in range(2):
            mark = len(client.events)
            await mic.say(question).sent()
            done = await client.wait_for("response.done", after=mark, timeout=90)
            assert done.data["response"]["status"] == "completed", done.data["response"]
            await asyncio.sleep(2.0)  # room for a reply to its own echo
        assert mic.echoed_frames > 20  # the echo really reached the server
        cancelled = [
            e
            for e in client.events
            if e.type == "response.done" and e.data["response"]["status"] == "cancelled"
        ]
        assert cancelled == []
        assert sum(e.type == "response.created" for e in client.events) == 2  # no replies to echo
    finally:
        await client.hangup()


async def test_a_user_talking_over_the_first_replys_echo_interrupts_it(hark):
    """Barge-in over a call's very first reply, half a second in, at the bot's own level
    over its echo: the guard has heard ~250 ms of echo, enough to find the delay in the
    waveforms and fit its echo model (before, such a user was hidden until the reply
    ended)."""
    question = utterance("Tell me a long story about a brave dragon and a knight.")
    stop = utterance("Wait, stop. Tell me about dogs instead.")
    client, mic = await echo_call(hark, 250, -9)
    try:
        mark = len(client.events)
        await mic.say(question).sent()
        started = await client.wait_for("output_audio_buffer.started", after=mark, timeout=90)
        await asyncio.sleep(0.5)
        response_id = started.data["response_id"]
        if any(
            e.type == "response.done" and e.data["response"]["id"] == response_id
            for e in client.events
        ):
            pytest.skip("the reply was over before the barge-in could be tried")
        await mic.say(stop).sent()
        done = await client.wait_for(
            "response.done", lambda d: d["response"]["id"] == response_id, timeout=30
        )
        assert done.data["response"]["status"] == "cancelled"
        assert mic.echoed_frames > 10  # the barge-in really was over the echo
    finally:
        await client.hangup()


async def test_a_user_talking_over_the_echo_still_interrupts(hark):
    """Barge-in over a later reply: the guard has measured the echo path on the first
    one."""
    first = utterance("Tell me a story about a cat.")
    question = utterance("Tell me a long story about a brave dragon and a knight.")
    stop = utterance("Stop, stop. Tell me about dogs instead.")
    client, mic = await echo_call(hark, 250, -9)
    try:
        await mic.say(first).sent()
        await client.wait_for("response.done", timeout=90)
        await asyncio.sleep(1.0)
        mark = len(client.events)
        await mic.say(question).sent()
        started = await client.wait_for("output_audio_buffer.started", after=mark, timeout=90)
        await asyncio.sleep(0.3)
        response_id = started.data["response_id"]
        if any(
            e.type == "response.done" and e.data["response"]["id"] == response_id
            for e in client.events
        ):
            pytest.skip("the reply was over before the barge-in could be tried")
        await mic.say(stop).sent()
        done = await client.wait_for(
            "response.done", lambda d: d["response"]["id"] == response_id, timeout=30
        )
        assert done.data["response"]["status"] == "cancelled"
    finally:
        await client.hangup()
