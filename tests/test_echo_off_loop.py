"""The echo listener's decisions on held voices, computed off the event loop, are the
decisions it takes inline: simulated calls (tests/echo_path.py: real Piper replies and
voices, real Silero) heard once frame by frame inline (`EchoListener.hear`) and once as
`TurnTaking` hears them (`InOrder`: the fits and onset checks on a worker thread, the
frames and sent audio that come meanwhile waiting their turn) give the same frames,
the same probabilities and the same replays, in the same order."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from media.vad import SileroModel, SileroVad
from server.turns.echo_listening import EchoListener, Heard
from server.turns.off_loop import InOrder, Steps
from server.turns.options import TurnDetectionConfig
from server.turns.turn_taking import TurnTaking
from tests.echo_path import early_barge_in_cases, run_case
from tests.test_media_echo_held_voice import call_audio, mic_frames

pytestmark = pytest.mark.slow

Event = tuple[str, tuple[Any, ...]]  # ("far", (pcm, sent_at)) or ("near", (pcm, end_ms, now))


class Recorder:
    """Notes what `run_case` hands its guard, in order, and hears nothing."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.delay_ms = None

    def far_end(self, frame: np.ndarray, sent_at: float) -> None:
        self.events.append(("far", (frame, sent_at)))

    def near_end(self, frame: np.ndarray, audio_end_ms: int, now: float | None = None) -> Any:
        self.events.append(("near", (frame, audio_end_ms, now)))
        return type("Verdict", (), {"frame": frame, "echo_only": False})


def events_of(with_echo: bool) -> list[Event]:
    """With echo: a soft question over the echo of a first reply, held, judged by what
    was sent, and replayed from its onset (tests/test_media_echo_held_voice.py). Without:
    a user talking over a first reply that does not echo, held while onset checks ask
    whether it could be echo."""
    recorder = Recorder()
    if with_echo:
        mic_pcm, sent48, _ = call_audio(0.1)
        for k, now, frame in mic_frames(recorder, mic_pcm, sent48):  # type: ignore[arg-type]
            recorder.near_end(frame, (k + 1) * 32, now)
    else:
        case = early_barge_in_cases(1, room=False)[0]
        run_case(case, recorder, with_echo=False)  # type: ignore[arg-type]
    return recorder.events


def inline(events: list[Event]) -> list[Heard]:
    listener = EchoListener("auto")
    vad = SileroVad(SileroModel.load())
    heard = []
    for kind, args in events:
        if kind == "far":
            listener.far_end(*args)
        else:
            frame, end_ms, now = args
            heard.append(listener.hear(frame, end_ms, vad, 0.5, in_turn=False, now=now))
    return heard


class Threads:
    """Where each of a guard's judgements of held audio ran."""

    def __init__(self, listener: EchoListener) -> None:
        self.seen: dict[str, list[int]] = {}
        for name in ("explain_held", "voice_could_be_echo"):
            setattr(listener.guard, name, self._noted(name, getattr(listener.guard, name)))

    def _noted(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def noted(*args: Any) -> Any:
            self.seen.setdefault(name, []).append(threading.get_ident())
            return fn(*args)

        return noted


async def off_loop(events: list[Event]) -> tuple[list[Heard], Threads, int]:
    """The events handed in as the session does, in bursts of 7 with no pause between
    them (so a decision begun inside a burst has the rest of it wait), the loop run
    briefly after each burst. Returns what was heard, where the work ran, and how many
    inputs came while a decision was being computed."""
    listener = EchoListener("auto")
    threads = Threads(listener)
    vad = SileroVad(SileroModel.load())
    inputs = InOrder("test")
    heard: list[Heard] = []
    waited = 0

    def hear(frame: np.ndarray, end_ms: int, now: float) -> Steps[None]:
        heard.append((yield from listener.steps(frame, end_ms, vad, 0.5, in_turn=False, now=now)))

    for i, (kind, args) in enumerate(events):
        waited += inputs.busy
        if kind == "far":
            inputs.handle(lambda args=args: listener.far_end(*args))
        else:
            inputs.handle(lambda args=args: hear(*args))
        if i % 7 == 6:
            await asyncio.sleep(0.001)
    for _ in range(2000):
        if not inputs.busy:
            break
        await asyncio.sleep(0.005)
    assert not inputs.busy
    return heard, threads, waited


@pytest.mark.parametrize("with_echo", [True, False], ids=["echo", "no_echo"])
async def test_decisions_off_the_loop_are_the_decisions_taken_inline(with_echo: bool) -> None:
    events = events_of(with_echo)
    expected = inline(events)
    heard, threads, waited = await off_loop(events)

    work = "explain_held" if with_echo else "voice_could_be_echo"
    assert threads.seen.get(work), f"no {work}: the case never held a voice"
    loop_thread = threading.get_ident()
    for name, idents in threads.seen.items():
        assert loop_thread not in idents, f"{name} ran on the event loop's thread"
    assert waited > 0, "no input came during a decision: the waiting was not tested"

    assert len(heard) == len(expected)  # no frame lost, none heard twice
    replayed = 0
    for got, want in zip(heard, expected, strict=True):
        assert np.array_equal(got.frame, want.frame)
        assert got.probability == want.probability
        assert [h.audio_end_ms for h in got.replay] == [h.audio_end_ms for h in want.replay]
        for a, b in zip(got.replay, want.replay, strict=True):
            assert np.array_equal(a.frame, b.frame) and a.probability == b.probability
        replayed += len(got.replay)
    assert replayed, "nothing held was replayed: the decisions' outcome was not tested"


async def test_a_call_that_ends_mid_decision_leaves_no_task_and_raises_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """`TurnTaking.close` (the session's, as the call ends) while a decision on a held
    voice is being computed: its task is cancelled, the frames waiting are dropped, and
    nothing is logged as failed; frames after the end are ignored."""
    from tests.test_turn_taking import FakeHost, FakeSTT

    def pending() -> list[asyncio.Task[Any]]:
        return [t for t in asyncio.all_tasks() if t.get_name() == "turns-in-order"]

    turns = TurnTaking(
        SileroVad(SileroModel.load()), FakeSTT(), TurnDetectionConfig(), FakeHost(), echo="auto"
    )
    assert turns.echo is not None
    arrival = [0.0]
    turns.echo.guard.clock = lambda: arrival[0]  # the simulated call's clock
    events = iter(events_of(with_echo=True))
    for kind, args in events:
        if kind == "far":
            turns.far_end(*args)
        else:
            arrival[0] = args[2]
            turns.push(args[0], args[1])
        if pending():
            break
    tasks = pending()
    assert tasks, "no decision was ever pending: nothing was tested"
    for kind, args in list(events)[:20]:  # frames come on while it is computed
        if kind == "near":
            arrival[0] = args[2]
            turns.push(args[0], args[1])
    turns.close()
    await asyncio.sleep(0.05)  # the worker thread finishes; nothing is done with it
    assert all(t.cancelled() for t in tasks) and not pending()
    turns.push(np.zeros(512, np.int16), 10**6)
    assert not pending()
    assert "failed" not in caplog.text
