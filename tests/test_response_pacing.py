"""How a response paces its engines: the first clause is spoken before the LLM runs on,
and a first chunk cut mid-sentence keeps little of the silence TTS puts after it.

The LLM and TTS here are fakes named as such (scripted deltas, tones of known length) so
the order of events is exact; `EngineWorker`'s read-ahead limit runs on its real thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Iterator

import numpy as np

from server.engines.chat import LLMRequest
from server.engines.threaded import EngineWorker
from server.protocol.conversation import Conversation
from server.reply.response import ResponseRun
from server.reply.spec import ReplySpec
from server.turns.timings import TurnTimings

RATE = 16_000


class FakeLLM:
    """Yields scripted deltas; notes how many the response has read."""

    name = "fake-llm"

    def __init__(self, deltas: list[str]) -> None:
        self.deltas = deltas
        self.read = 0

    async def load(self) -> None:
        pass

    async def stream(self, request: LLMRequest) -> AsyncIterator[str]:
        for delta in self.deltas:
            self.read += 1
            yield delta
            await asyncio.sleep(0)


class FakeTTS:
    """Speaks each text as 0.5 s of tone then 0.3 s of silence, after `delay` seconds."""

    name = "fake-tts"
    sample_rate = RATE

    def __init__(self, llm: FakeLLM, delay: float = 0.05) -> None:
        self.llm = llm
        self.delay = delay
        self.texts: list[str] = []
        self.llm_read_when_called: list[int] = []

    async def load(self) -> None:
        pass

    async def synthesize(
        self, text: str, voice: str | None = None, speed: float = 1.0
    ) -> AsyncIterator[np.ndarray]:
        self.texts.append(text)
        self.llm_read_when_called.append(self.llm.read)
        await asyncio.sleep(self.delay)
        tone = (np.sin(np.arange(RATE // 2) * 0.2) * 8000).astype(np.int16)
        yield np.concatenate([tone, np.zeros(RATE * 3 // 10, np.int16)])


class FakeTrack:
    """Records what the response queues instead of playing it."""

    def __init__(self) -> None:
        self.response_id: str | None = None
        self.pushed: list[np.ndarray] = []
        self.llm_read_at_push: list[int] = []
        self.llm: FakeLLM | None = None

    def begin_response(self, response_id: str) -> None:
        self.response_id = response_id

    queued_ms = 0  # played at once

    def push(self, pcm: np.ndarray, rate: int) -> None:
        self.pushed.append(pcm)
        self.llm_read_at_push.append(self.llm.read if self.llm else 0)

    def end_response(self) -> None:
        pass

    async def wait_drained(self) -> None:
        pass

    def clear(self) -> int:
        return 0


async def run_reply(deltas: list[str]) -> tuple[FakeLLM, FakeTTS, FakeTrack, ResponseRun]:
    llm = FakeLLM(deltas)
    tts = FakeTTS(llm)
    track = FakeTrack()
    track.llm = llm
    return llm, tts, track, await run_to_end(llm, tts, track)


async def run_to_end(llm: object, tts: object, track: FakeTrack) -> ResponseRun:
    """One ResponseRun over these fakes, started and awaited to its end (5 s at most)."""
    done = asyncio.Event()
    run = ResponseRun(
        response_id="resp_test",
        conversation=Conversation(),
        llm=llm,  # type: ignore[arg-type]
        tts=tts,  # type: ignore[arg-type]
        track=track,  # type: ignore[arg-type]
        emit=lambda event: None,
        spec=ReplySpec(LLMRequest("", ()), voice="alloy"),
        timings=TurnTimings(),
        on_finished=lambda _: done.set(),
    )
    run.start()
    await asyncio.wait_for(done.wait(), 5)
    return run


def trailing_silence_ms(pcm: np.ndarray) -> float:
    loud = np.flatnonzero(np.abs(pcm.astype(np.int32)) > 200)
    return (len(pcm) - 1 - loud[-1]) * 1000 / RATE


async def test_the_llm_waits_while_the_first_clause_is_spoken() -> None:
    words = "Paris is the capital of France. It is a lovely city on the Seine.".split(" ")
    deltas = [w if i == 0 else " " + w for i, w in enumerate(words)]
    llm, tts, track, run = await run_reply(deltas)
    assert run.status == "completed"
    assert tts.texts == ["Paris is the capital", "of France.", "It is a lovely city on the Seine."]
    # The first clause was complete once " of" was followed by " France.": read 6 deltas.
    assert tts.llm_read_when_called[0] == 6
    # Nothing more was read from the LLM until that clause's audio was queued.
    assert track.llm_read_at_push[0] == 6
    assert llm.read == len(deltas)


async def test_a_first_chunk_cut_mid_sentence_keeps_little_trailing_silence() -> None:
    _, _, track, _ = await run_reply(["Paris", " is", " the", " capital", " of", " France."])
    first, second = track.pushed
    assert trailing_silence_ms(first) <= 45  # "Paris is the capital": a phrase went on
    assert trailing_silence_ms(second) >= 290  # "of France.": a sentence ended


async def test_the_worker_stops_reading_ahead_of_a_paused_consumer() -> None:
    produced: list[int] = []

    def numbers() -> Iterator[int]:
        for i in range(100):
            produced.append(i)
            yield i

    worker = EngineWorker("test")
    items = worker.iterate(numbers, ahead=2)
    assert await items.__anext__() == 0
    await asyncio.sleep(0.3)  # the consumer pauses: the worker must stop soon
    assert len(produced) <= 1 + 2 + 1  # read, two waiting, one computed and held
    rest = [item async for item in items]
    assert rest == list(range(1, 100))
    worker.shutdown()


async def test_a_job_abandoned_while_it_waited_never_starts() -> None:
    """One TTS thread serves every call: a clause of a reply dropped while it waited
    (a barge-in, a speculative reply discarded) must not be rendered when its turn comes."""
    worker = EngineWorker("test")
    started, gate = threading.Event(), threading.Event()
    made: list[str] = []

    def items() -> Iterator[int]:
        made.append("made")
        yield 1

    blocked = asyncio.ensure_future(worker.run(lambda: (started.set(), gate.wait())))
    await asyncio.to_thread(started.wait, 10)
    pending = asyncio.ensure_future(anext(worker.iterate(items)))
    await asyncio.sleep(0.05)  # submitted behind the blocker
    pending.cancel()  # the consumer goes before the job's turn comes
    with contextlib.suppress(asyncio.CancelledError):
        await pending
    gate.set()
    await blocked
    await worker.run(lambda: None)  # anything queued before this has run
    assert made == []
    worker.shutdown()


class FakeBatchingTTS(FakeTTS):
    """A fake that, like F5-TTS, asks for the clauses waiting to be joined."""

    clause_batch_chars = 80


async def test_clauses_that_piled_up_are_joined_for_engines_that_ask() -> None:
    text = (
        "Paris is the capital of France, a city on the Seine. It has many museums, "
        "and the Louvre is the largest. People love its cafes."
    )
    words = text.split(" ")
    llm = FakeLLM([w if i == 0 else " " + w for i, w in enumerate(words)])
    tts = FakeBatchingTTS(llm, delay=0.05)
    track = FakeTrack()
    run = await run_to_end(llm, tts, track)
    assert run.status == "completed"
    # The first clause alone (first audio sooner); the next had nothing waiting behind
    # it; the last two piled up while it was spoken, and fit in 80 characters together.
    assert tts.texts == [
        "Paris is the capital",
        "of France, a city on the Seine.",
        "It has many museums, and the Louvre is the largest. People love its cafes.",
    ]
    assert run.item.text == text
