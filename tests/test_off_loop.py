"""`InOrder`: a call's inputs handled one after another, in the order they came, each
one's offloaded work on a worker thread while the event loop runs on; inputs that come
meanwhile wait their turn. The inputs here are scripted steps (fakes, named so): what is
tested is the ordering, the threads and the ending of a call, not the echo work."""

from __future__ import annotations

import asyncio
import threading

import pytest

from server.turns.off_loop import Awaited, InOrder, Offload, Steps, run_here


class Script:
    """Fake inputs: each notes when it began and ended (on the loop) and where its
    offloaded work ran; `gate`, when given, holds that work until set."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.log: list[str] = []
        self.threads: list[int] = []
        self.gate = gate

    def plain(self, name: str) -> None:
        self.log.append(name)

    def deciding(self, name: str) -> Steps[None]:
        self.log.append(f"{name}:begin")
        answer = yield Offload(lambda: self._work(name))
        self.log.append(f"{name}:end:{answer}")

    def _work(self, name: str) -> str:
        self.threads.append(threading.get_ident())
        if self.gate is not None and not self.gate.wait(5.0):
            raise TimeoutError("the test never opened the gate")
        return name.upper()


async def settle(inputs: InOrder) -> None:
    for _ in range(500):
        if not inputs.busy:
            return
        await asyncio.sleep(0.002)
    raise AssertionError("the inputs never settled")


async def test_inputs_during_a_decision_wait_and_keep_their_order() -> None:
    script = Script(gate=threading.Event())
    inputs = InOrder("test")
    inputs.handle(lambda: script.plain("a"))
    inputs.handle(lambda: script.deciding("b"))
    assert inputs.busy
    for name in ("c", "d"):
        inputs.handle(lambda name=name: script.plain(name))
    inputs.handle(lambda: script.deciding("e"))
    inputs.handle(lambda: script.plain("f"))
    assert script.log == ["a", "b:begin"]  # the rest waits for b's decision
    await asyncio.sleep(0.01)
    assert script.log == ["a", "b:begin"]  # ... however long it takes
    script.gate.set()
    await settle(inputs)
    assert script.log == ["a", "b:begin", "b:end:B", "c", "d", "e:begin", "e:end:E", "f"]
    loop_thread = threading.get_ident()
    assert len(script.threads) == 2
    assert loop_thread not in script.threads


async def test_with_no_decision_pending_an_input_is_handled_at_once() -> None:
    script = Script()
    inputs = InOrder("test")
    inputs.handle(lambda: script.plain("a"))
    assert script.log == ["a"] and not inputs.busy


def test_with_no_event_loop_the_work_runs_inline() -> None:
    script = Script()
    inputs = InOrder("test")
    inputs.handle(lambda: script.deciding("a"))
    inputs.handle(lambda: script.plain("b"))
    assert script.log == ["a:begin", "a:end:A", "b"]
    assert script.threads == [threading.get_ident()]
    assert run_here(script.deciding("c")) is None


async def test_awaited_work_runs_on_the_loop_while_later_inputs_wait() -> None:
    """An engine's coroutine (`Awaited`) is awaited on the loop, not a worker thread,
    and the inputs after it wait for its answer as for offloaded work."""
    log: list[str] = []
    answer: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    loop_thread = threading.get_ident()

    async def engine() -> str:
        log.append(f"engine on loop thread: {threading.get_ident() == loop_thread}")
        return await answer

    def asking() -> Steps[None]:
        log.append("ask")
        log.append((yield Awaited(engine)))

    inputs = InOrder("test")
    inputs.handle(asking)
    inputs.handle(lambda: log.append("next"))
    await asyncio.sleep(0.01)
    assert inputs.busy and log == ["ask", "engine on loop thread: True"]
    answer.set_result("words")
    await settle(inputs)
    assert log == ["ask", "engine on loop thread: True", "words", "next"]


def test_with_no_event_loop_awaited_work_runs_in_a_loop_of_its_own() -> None:
    async def engine() -> int:
        await asyncio.sleep(0)
        return 7

    def asking() -> Steps[int]:
        return (yield Awaited(engine)) * 6

    assert run_here(asking()) == 42


async def test_failing_work_is_raised_where_it_was_asked_for_and_the_next_input_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log: list[str] = []

    def failing() -> Steps[None]:
        try:
            yield Offload(lambda: 1 / 0)
        except ZeroDivisionError:
            log.append("caught")
        yield Offload(lambda: [][1])  # not caught: logged, and the call goes on

    inputs = InOrder("test")
    inputs.handle(failing)
    inputs.handle(lambda: log.append("next"))
    await settle(inputs)
    assert log == ["caught", "next"]
    assert "an input failed" in caplog.text


async def test_a_call_that_ends_mid_decision_leaves_no_task_and_raises_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gate = threading.Event()
    script = Script(gate=gate)
    inputs = InOrder("test")
    inputs.handle(lambda: script.deciding("a"))
    inputs.handle(lambda: script.plain("b"))
    assert inputs.busy
    tasks = [t for t in asyncio.all_tasks() if t.get_name() == "test-in-order"]
    assert len(tasks) == 1
    inputs.close()
    gate.set()  # the thread finishes its work; nothing is done with it
    await asyncio.sleep(0.05)
    assert tasks[0].done() and tasks[0].cancelled()
    assert script.log == ["a:begin"]  # neither a's end nor b was handled
    assert not inputs.busy
    inputs.handle(lambda: script.plain("c"))  # after the end: ignored
    assert script.log == ["a:begin"]
    assert "failed" not in caplog.text
