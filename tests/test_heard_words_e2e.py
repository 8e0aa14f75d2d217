"""Heard-only to the word over real WebRTC: a reply interrupted ~1.5 s in keeps exactly
the words that had fully played at the client, checked against the audio the client got.

The client (real aiortc) records the reply as it plays. Whisper's word timestamps on that
recording are the reference for which words were played: every word Whisper heard end
clearly before the cut must be in the kept transcript, and the kept transcript's last
word must have ended by the cut (Whisper places ends ~80 ms late, hence the margins).
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from server.tools.call_client import AUDIBLE_RMS, CallClient, ReceivedEvent, last_voiced_ms
from tests.test_call_e2e import connect
from tests.test_interruptions_e2e import response_done, transcript_of, utterance
from tests.word_reference import heard_words, matched

pytestmark = pytest.mark.slow

FRAME = 960  # the recorder's 20 ms frames at 48 kHz
MARGIN_MS = 200  # Whisper's word ends: ~80 ms late on Piper's voice, spread ±80 ms


def played_reply(client: CallClient, started: ReceivedEvent, until: float) -> np.ndarray:
    """The reply's audio as the client played it, from its first frame to `until`."""
    rec = client.recorder
    first = next(
        i
        for i, (at, level) in enumerate(zip(rec.times, rec.levels, strict=True))
        if at >= started.at - 0.3 and level >= AUDIBLE_RMS
    )
    last = max(i for i, at in enumerate(rec.times) if at <= until)
    # From the frame before the first audible one: Piper's quiet lead-in.
    return np.concatenate(rec.chunks[first - 1 : last + 1])


async def test_an_interruption_keeps_the_words_fully_played_and_no_more(hark):
    stop = utterance("Stop. What is two plus two?", tail_ms=1500)
    # Ava's greeting: a reply of known length (~6 s) whatever the LLM would have said.
    client = await connect(hark, {"persona": "ava"})
    try:
        started = await client.wait_for("output_audio_buffer.started", timeout=90)
        response_id = started.data["response_id"]
        await asyncio.sleep(1.5)
        mark = len(client.events)
        await client.say(stop, 48000)
        confirmed = await client.wait_for(
            "hark.interruption", lambda d: d["status"] == "confirmed", after=mark, timeout=20
        )
        done = await response_done(client, response_id)
        assert done.data["response"]["status"] == "cancelled"
        full, heard = transcript_of(client, response_id)

        # A strict word prefix of what the LLM wrote: some words, not the whole reply.
        full_words, heard_words_ = full.split(), heard.split()
        assert 0 < len(heard_words_) < len(full_words), (heard, full)
        assert full_words[: len(heard_words_)] == heard_words_, (heard, full)
        stored = done.data["response"]["output"][0]["content"][0]["transcript"]
        assert stored == heard
        client.send(
            {
                "type": "conversation.item.retrieve",
                "item_id": done.data["response"]["output"][0]["id"],
            }
        )
        item = await client.wait_for("conversation.item.retrieved", after=mark)
        assert item.data["item"]["content"][0]["transcript"] == heard

        # The server's own word timing: the kept words ended by the cut.
        cut = confirmed.data["audio_end_ms"]
        assert 1000 < cut < 4000, confirmed.data  # paused ~1.5 s in, plus the VAD's onset
        assert 0 < confirmed.data["heard_ms"] <= cut

        # What the client played: the kept words, and no fully played word left out.
        played = played_reply(client, started, done.at + 0.5)
        # The client played nothing of the reply past the cut (sent is played over RTP).
        assert last_voiced_ms(played, 48000) <= cut + 60, (last_voiced_ms(played, 48000), cut)
        reference = matched(full_words, heard_words(played, 48000))
        k = len(heard_words_)
        print(
            f"cut {cut} ms, heard_ms {confirmed.data['heard_ms']}: {heard!r}; Whisper: {reference}"
        )
        assert reference, "Whisper heard none of the reply in the client's recording"
        if k - 1 in reference:
            assert reference[k - 1] <= cut + MARGIN_MS, (heard, reference, cut)
        left_out = [n for n, end in reference.items() if n >= k and end < cut - MARGIN_MS]
        assert not left_out, (heard, full, reference, cut)
        # Whisper recognised most kept words (tiny.en hears "Ava" as "Eva" now and then).
        assert len([n for n in reference if n < k]) >= k / 2, (heard, reference)
    finally:
        await client.hangup()
