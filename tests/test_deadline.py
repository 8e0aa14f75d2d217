"""A shared TTS thread speaks the clause needed soonest first: a reply's first words
before the later clauses of replies that still have audio to play.

The executor runs on its real thread, held on a first job (an Event) while the others are
queued, so the order is exact; the TTS in the speaker test is a fake named as such.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import numpy as np

from server.engines.deadline import START_AHEAD_S, EarliestFirstExecutor, needed_by, replying
from server.engines.threaded import EngineWorker
from server.reply.heard_text import HeardText
from server.reply.speech import ClauseSpeaker
from server.turns.timings import TurnTimings

RATE = 16_000


def test_the_earliest_deadline_runs_first_and_ties_keep_their_order() -> None:
    clock = [100.0]
    executor = EarliestFirstExecutor("test", clock=lambda: clock[0])
    started, gate = threading.Event(), threading.Event()
    ran: list[str] = []
    # Holds the thread while the rest queue up.
    blocker = executor.submit(lambda: (started.set(), gate.wait()))
    started.wait(10)
    futures = [
        executor.submit(lambda: ran.append("later clause, audio until 103"), 103.0),
        executor.submit(lambda: ran.append("first clause, due now"), None),
        executor.submit(lambda: ran.append("later clause, audio until 101"), 101.0),
        executor.submit(lambda: ran.append("second first clause, due now"), None),
    ]
    gate.set()
    blocker.result(timeout=10)
    for future in futures:
        future.result(timeout=10)
    assert ran == [
        "first clause, due now",
        "second first clause, due now",
        "later clause, audio until 101",
        "later clause, audio until 103",
    ]
    executor.shutdown()


def test_a_stopped_executor_cancels_what_waits() -> None:
    executor = EarliestFirstExecutor("test")
    started, gate = threading.Event(), threading.Event()
    executor.submit(lambda: (started.set(), gate.wait()))
    started.wait(10)
    waiting = executor.submit(lambda: None)
    executor.shutdown()
    gate.set()
    assert waiting.cancelled()


async def test_worker_by_deadline_serves_the_needed_soonest() -> None:
    worker = EngineWorker("test", by_deadline=True)
    gate = threading.Event()
    order: list[str] = []

    def items(name: str) -> Iterator[str]:
        order.append(name)
        yield name

    async def take(name: str, deadline: float | None) -> list[str]:
        return [item async for item in worker.iterate(lambda: items(name), deadline=deadline)]

    blocked = asyncio.ensure_future(worker.run(gate.wait))
    later = asyncio.ensure_future(take("later", time.monotonic() + 60))
    first = asyncio.ensure_future(take("first", None))
    await asyncio.sleep(0.05)  # both submitted behind the blocker
    gate.set()
    await asyncio.gather(blocked, later, first)
    assert order == ["first", "later"]
    worker.shutdown()


async def test_a_job_abandoned_while_waiting_never_starts() -> None:
    worker = EngineWorker("test")
    gate = threading.Event()
    started: list[str] = []

    def items() -> Iterator[int]:
        started.append("made")
        yield 1

    blocked = asyncio.ensure_future(worker.run(gate.wait))
    pending = asyncio.ensure_future(anext(worker.iterate(items)))
    await asyncio.sleep(0.05)  # submitted behind the blocker
    pending.cancel()  # the consumer goes (a barge-in) before the job's turn comes
    with contextlib.suppress(asyncio.CancelledError):
        await pending
    gate.set()
    await blocked
    await worker.run(lambda: None)  # anything queued before this has run
    assert started == []
    worker.shutdown()


@dataclass
class AudioUntil:
    """A reply whose audio runs out at a fixed time."""

    audio_until: float | None


class FakeTTS:
    """Speaks each text as one second of tone; notes the deadline each was asked with."""

    name = "fake-tts"
    sample_rate = RATE

    def __init__(self) -> None:
        self.asked: list[tuple[str, float | None]] = []

    async def load(self) -> None:
        pass

    async def synthesize(
        self, text: str, voice: str | None = None, speed: float = 1.0
    ) -> AsyncIterator[np.ndarray]:
        self.asked.append((text, needed_by()))
        yield (np.sin(np.arange(RATE) * 0.2) * 8000).astype(np.int16)


async def test_each_clause_is_needed_when_the_audio_before_it_runs_out() -> None:
    clock = [50.0]
    tts = FakeTTS()
    heard = HeardText()
    heard.add_text("Hello there. How are you? Fine.")
    speaker = ClauseSpeaker(
        tts,
        voice="alloy",
        speed=1.0,
        heard=heard,
        timings=TurnTimings(),
        play=lambda pcm, rate: None,
        clock=lambda: clock[0],
    )
    clauses: asyncio.Queue[str | None] = asyncio.Queue()
    for clause in ("Hello there.", "How are you?", "Fine.", None):
        clauses.put_nowait(clause)
    with replying(AudioUntil(7.0)):  # the caller's own setting is left as it was
        await speaker.speak(clauses)
        assert needed_by() == 7.0 - START_AHEAD_S
    # The first clause is needed now; each later one in time to be spoken before the
    # seconds of audio ahead of it have played out.
    assert tts.asked == [
        ("Hello there.", None),
        ("How are you?", 51.0 - START_AHEAD_S),
        ("Fine.", 52.0 - START_AHEAD_S),
    ]
