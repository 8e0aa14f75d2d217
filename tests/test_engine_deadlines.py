"""An engine thread serves the job whose caller runs out of audio first
(server.engines.deadlines), and a reply's later clauses say how much audio is in hand."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import numpy as np
import pytest

from server.engines.deadlines import MARGIN_S, DeadlineExecutor, audio_in_hand, due
from server.engines.threaded import EngineWorker
from server.engines.word_timing import TimedAudio
from server.reply.heard_text import HeardText
from server.reply.speech import ClauseSpeaker
from server.turns.timings import TurnTimings


def served(executor: DeadlineExecutor, ask: Callable[[list[str]], None]) -> list[str]:
    """The order in which the jobs `ask` submits (each appending its label to the list it
    is given) ran, all asked while the executor's thread was busy with another."""
    go, started = threading.Event(), threading.Event()
    executor.submit(lambda: (started.set(), go.wait(5)))
    assert started.wait(5)
    ran: list[str] = []
    ask(ran)
    go.set()
    executor.shutdown()  # waits for every job asked
    return ran


def test_jobs_with_no_deadline_run_in_the_order_asked():
    def ask(ran: list[str]) -> None:
        for label in "abcde":
            executor.submit(ran.append, label)

    executor = DeadlineExecutor("test")
    assert served(executor, ask) == list("abcde")


def test_a_job_whose_caller_has_audio_in_hand_waits_behind_one_asked_later():
    def ask(ran: list[str]) -> None:
        with audio_in_hand(3.0):  # a later clause: 3 s of the reply still to play
            executor.submit(ran.append, "later clause")
        executor.submit(ran.append, "first clause of another call")

    executor = DeadlineExecutor("test")
    assert served(executor, ask) == ["first clause of another call", "later clause"]


def test_a_deferred_job_is_not_passed_over_once_its_deadline_has_come():
    clock = [100.0]

    def ask(ran: list[str]) -> None:
        with audio_in_hand(1.0, clock=lambda: clock[0]):  # due at 100.5
            executor.submit(ran.append, "later clause")
        clock[0] = 101.0  # its caller's audio runs out: anything asked now is due after it
        executor.submit(ran.append, "new first clause")

    executor = DeadlineExecutor("test", clock=lambda: clock[0])
    assert served(executor, ask) == ["later clause", "new first clause"]


def test_the_deadline_is_the_audio_in_hand_less_the_margin_and_only_inside():
    assert due() is None
    with audio_in_hand(2.0, clock=lambda: 10.0):
        assert due() == pytest.approx(10.0 + 2.0 - MARGIN_S)
        with audio_in_hand(0.1, clock=lambda: 10.0):
            assert due() == 10.0  # never before now
    assert due() is None


def test_an_exception_reaches_the_caller_and_the_thread_goes_on():
    executor = DeadlineExecutor("test")
    with pytest.raises(ZeroDivisionError):
        executor.submit(lambda: 1 / 0).result(5)
    assert executor.submit(lambda: 7).result(5) == 7
    executor.shutdown(cancel_futures=True)
    with pytest.raises(RuntimeError):
        executor.submit(lambda: 1)


async def test_a_reply_s_later_clauses_are_asked_with_the_audio_it_has_in_hand():
    """ClauseSpeaker's first clause is due at once; each later one with what the reply
    has queued and not yet played (`audio_ahead`)."""
    asked: list[float | None] = []
    worker = EngineWorker("fake-tts")

    class RecordingTTS:
        sample_rate = 16000

        async def synthesize(self, text, voice=None, speed=1.0):  # pragma: no cover
            yield np.zeros(0, np.int16)

        async def synthesize_words(self, text, voice=None, speed=1.0):
            def render():
                yield TimedAudio(np.full(1600, 3000, np.int16))

            asked.append(due())  # as the engine's worker would be asked
            async for chunk in worker.iterate(render):
                yield chunk

    in_hand = [0.0, 2.5, 4.0]
    speaker = ClauseSpeaker(
        RecordingTTS(), voice="x", speed=1.0, heard=HeardText(), timings=TurnTimings(),
        play=lambda pcm, rate: None, audio_ahead=lambda: in_hand.pop(0),
    )  # fmt: skip
    clauses: asyncio.Queue[str | None] = asyncio.Queue()
    for clause in ("One.", "Two.", "Three."):
        clauses.put_nowait(clause)
    clauses.put_nowait(None)
    loop = asyncio.get_running_loop()
    before = loop.time()
    await speaker.speak(clauses)
    assert asked[0] is not None and asked[0] - before < 0.2  # due now
    assert asked[1] - before == pytest.approx(2.5 - MARGIN_S, abs=0.2)
    assert asked[2] - before == pytest.approx(4.0 - MARGIN_S, abs=0.2)
    assert due() is None  # nothing leaks into the caller's context
    worker.shutdown()
