"""The LLM's slots: a first-come-first-served turn lock and a fair pool of contexts."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from server.engines.llama_slots import Slot, SlotPool, TurnLock, in_turns, shared_prefix
from server.engines.threaded import EngineWorker


def test_the_turn_lock_goes_to_waiters_in_arrival_order() -> None:
    """A thread that gives the lock up and asks again at once goes behind the others
    (threading.Lock would often hand it straight back: one reply would starve the rest)."""
    lock = TurnLock()
    order: list[str] = []
    started = threading.Barrier(3)

    def steps(name: str, count: int):
        for step in range(count):
            order.append(f"{name}{step}")  # in `next`: under the lock, like a token
            time.sleep(0.002)
            yield step

    def run(name: str, count: int) -> None:
        started.wait()
        for _ in in_turns(steps(name, count), lock):
            pass  # asks again at once: a plain Lock would often hand it straight back

    with lock.turn():  # both threads queue up behind the test's own turn
        threads = [threading.Thread(target=run, args=(n, 4)) for n in "ab"]
        for thread in threads:
            thread.start()
        started.wait()
        time.sleep(0.1)
    for thread in threads:
        thread.join(timeout=10)
    assert sorted(order) == ["a0", "a1", "a2", "a3", "b0", "b1", "b2", "b3"]
    names = [step[0] for step in order]
    # Strictly alternating: the other thread was waiting each time one gave the lock up.
    assert all(names[i] != names[i + 1] for i in range(len(names) - 1)), order


def test_closing_the_stepped_generator_closes_its_source() -> None:
    closed = []

    def source():
        try:
            yield from range(100)
        finally:
            closed.append(True)

    steps = in_turns(source(), TurnLock())
    assert next(steps) == 0
    steps.close()
    assert closed == [True]


def test_each_step_runs_inside_the_engines_step_set_up() -> None:
    """The LLM chooses a step's threads in `step()`: every `next` of the source must run
    inside it, under the lock."""
    inside: list[bool] = []
    entered = 0
    active = False

    class Step:
        def __enter__(self) -> None:
            nonlocal entered, active
            entered += 1
            active = True

        def __exit__(self, *exc: object) -> None:
            nonlocal active
            active = False

    def source():
        for item in range(3):
            inside.append(active)
            yield item

    assert list(in_turns(source(), TurnLock(), step=Step)) == [0, 1, 2]
    assert inside == [True, True, True]
    assert entered == 4  # three items and the step that finds the source exhausted


def test_shared_prefix() -> None:
    assert shared_prefix("You are Ava.\nQ: hi", "You are Ava.\nQ: hello") == len(
        "You are Ava.\nQ: h"
    )
    assert shared_prefix("", "abc") == 0
    assert shared_prefix("abc", "abc") == 3


def slots(n: int) -> list[Slot]:
    return [Slot(i, EngineWorker(f"test{i}")) for i in range(n)]


async def test_a_reply_goes_to_the_free_slot_that_holds_its_conversation() -> None:
    pool = SlotPool(slots(3))
    pool.slots[1].last_prompt = "Persona.\nQ: Where is Rome?\nA: In Italy.\n"
    pool.slots[2].last_prompt = "Persona.\nQ: Count to ten.\n"
    slot = await pool.acquire("Persona.\nQ: Where is Rome?\nA: In Italy.\nQ: And Paris?\nA:")
    assert slot.index == 1
    other = await pool.acquire("Persona.\nQ: Count to ten.\nA: 1, 2\nQ: More\nA:")
    assert other.index == 2
    assert pool.busy == 2
    pool.release(slot)
    pool.release(other)
    assert pool.busy == 0


async def one_slot_and_two_waiting() -> tuple[SlotPool, Slot, asyncio.Task, asyncio.Task]:
    pool = SlotPool(slots(1))
    held = await pool.acquire("a")
    first = asyncio.create_task(pool.acquire("b"))
    second = asyncio.create_task(pool.acquire("c"))
    await asyncio.sleep(0.01)
    assert not first.done() and not second.done()
    return pool, held, first, second


async def test_when_every_slot_is_busy_replies_wait_their_turn() -> None:
    pool, held, first, second = await one_slot_and_two_waiting()
    pool.release(held)
    assert (await asyncio.wait_for(first, 1)) is held
    assert not second.done()
    pool.release(held)
    assert (await asyncio.wait_for(second, 1)) is held


async def test_a_reply_abandoned_while_waiting_frees_its_place() -> None:
    pool, held, gone, waiting = await one_slot_and_two_waiting()
    gone.cancel()  # the caller barged in before its reply got a slot
    with pytest.raises(asyncio.CancelledError):
        await gone
    pool.release(held)
    assert (await asyncio.wait_for(waiting, 1)) is held
    pool.release(held)
    assert pool.busy == 0


def test_a_reply_short_of_its_first_words_goes_before_replies_already_speaking() -> None:
    """A long reply (past its urgent steps) is generating; a new reply's prompt and first
    tokens take the lock ahead of it at each turn, then both take turns again."""
    lock = TurnLock()
    order: list[str] = []
    long_started = threading.Event()

    def steps(name: str, count: int):
        for step in range(count):
            order.append(f"{name}{step}")
            if name == "old":
                long_started.set()
            time.sleep(0.003)
            yield step

    def run(name: str, count: int, urgent_steps: int) -> None:
        for _ in in_turns(steps(name, count), lock, urgent_steps):
            pass

    old = threading.Thread(target=run, args=("old", 30, 0))
    old.start()
    long_started.wait(5)
    new = threading.Thread(target=run, args=("new", 6, 3))
    new.start()
    old.join(10)
    new.join(10)
    first_new = order.index("new0")
    # The new reply's three urgent steps ran back to back, the old one waiting...
    assert order[first_new : first_new + 3] == ["new0", "new1", "new2"], order
    # ... and after them the two took turns.
    after = [step[0] for step in order[first_new + 3 : first_new + 9]]
    assert all(after[i] != after[i + 1] for i in range(len(after) - 1)), order
