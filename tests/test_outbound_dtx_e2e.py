"""Outbound DTX over a real call: a client whose SDP offer says `usedtx=1` (it prefers to
receive DTX, RFC 7587) gets an idle call as a short packet every 400 ms, not 50 silence
packets a second, and still hears every reply whole."""

from __future__ import annotations

import asyncio
import time

import pytest

from media.opus_dtx import ask_for_dtx
from server.tools.call_client import CallClient, mint_client_secret

pytestmark = pytest.mark.slow


async def connect(hark, dtx: bool) -> CallClient:
    token = await mint_client_secret(hark.url, hark.api_key)
    client = CallClient(hark.url, token, offer_filter=ask_for_dtx if dtx else None)
    await client.connect()
    await client.wait_for("session.created", timeout=20)
    return client


def frames_between(client: CallClient, start: float, end: float) -> int:
    return sum(1 for at in client.recorder.times if start <= at < end)


async def test_a_client_that_asks_for_dtx_idles_on_a_few_packets_and_hears_replies(hark):
    plain, dtx = await connect(hark, dtx=False), await connect(hark, dtx=True)
    try:
        await asyncio.sleep(1.0)  # past the hangover of encoded silence after the start
        start = time.monotonic()
        await asyncio.sleep(2.0)
        end = time.monotonic()
        # Each packet received is one decoded 20 ms frame at the client.
        assert frames_between(plain, start, end) >= 60  # ~100 without DTX
        assert frames_between(dtx, start, end) <= 10  # ~5 with it

        mark = len(dtx.events)
        dtx.send(
            {
                "type": "conversation.item.create",
                "item": {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": "Say hello in one sentence."}],
                },
            }
        )
        dtx.send({"type": "response.create"})
        began = await dtx.wait_for("output_audio_buffer.started", after=mark, timeout=90)
        stopped = await dtx.wait_for("output_audio_buffer.stopped", after=mark, timeout=90)
        done = await dtx.wait_for("response.done", after=mark, timeout=30)
        assert done.data["response"]["status"] == "completed"
        await asyncio.sleep(0.3)  # the last frames on the wire
        heard_ms = dtx.recorder.audible_ms_between(began.at - 0.5, time.monotonic())
        played_ms = (stopped.at - began.at) * 1000
        # The reply came through the DTX gaps whole: a frame for every 20 ms it played (no
        # DTX inside a reply), and audible (speech has quiet frames of its own).
        frames_ms = 20 * frames_between(dtx, began.at - 0.1, stopped.at + 0.1)
        assert played_ms >= 400 and frames_ms >= 0.9 * played_ms, (frames_ms, played_ms)
        assert heard_ms >= 0.4 * played_ms, (heard_ms, played_ms)
    finally:
        await plain.hangup()
        await dtx.hangup()
