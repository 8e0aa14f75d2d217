"""The drain's order of things (server/calls/drain.py), with fake calls: refuse at once, wait
for calls to end up to the timeout, then end the rest with `server_shutdown`; a second
SIGTERM stops the wait. The e2e test (test_cluster_e2e.py) drains a real node."""

from __future__ import annotations

import asyncio

import pytest

from server.calls.drain import Drain
from server.calls.runtime import NodeRuntime
from server.errors import Overloaded


class FakeSession:
    """A live call as the drain sees it: `end(reason)` tells the client, then closes."""

    def __init__(self, calls: FakeCalls, call_id: str) -> None:
        self.calls = calls
        self.call_id = call_id
        self.closed = False
        self.ended_with: str | None = None

    def end(self, reason: str) -> asyncio.Task[None]:
        self.ended_with = reason

        async def close() -> None:
            self.closed = True
            self.calls.sessions.remove(self)

        return asyncio.create_task(close())


class FakeCalls:
    def __init__(self, count: int) -> None:
        self.sessions = [FakeSession(self, f"rtc_{i}") for i in range(count)]

    def __len__(self) -> int:
        return len(self.sessions)

    def live(self) -> list[FakeSession]:
        return list(self.sessions)


def draining_node(calls: FakeCalls, timeout_s: float) -> tuple[NodeRuntime, Drain, list[str]]:
    runtime = NodeRuntime()
    runtime.readiness.ready = True
    runtime.calls = calls  # type: ignore[assignment]
    events: list[str] = []
    drain = Drain(
        runtime.readiness,
        lambda: runtime.calls,
        timeout_s,
        on_change=lambda: events.append("changed"),
        on_done=lambda: events.append("done"),
    )
    return runtime, drain, events


async def test_new_calls_are_refused_at_once_and_the_rest_ended_after_the_timeout():
    calls = FakeCalls(2)
    runtime, drain, events = draining_node(calls, timeout_s=0.5)
    sessions = calls.live()
    drain.begin()
    assert events == ["changed"] and runtime.readiness.status == "draining"
    assert not runtime.readiness.accepting
    with pytest.raises(Overloaded) as refused:
        runtime.admit_call()
    assert (refused.value.code, refused.value.retry_after_s) == ("server_draining", 1)
    runtime.require_calls()  # hang-ups and sidebands of live calls still work
    await asyncio.sleep(0.2)
    assert all(s.ended_with is None for s in sessions)  # still within the timeout
    assert drain.task is not None
    await asyncio.wait_for(drain.task, 2)
    assert [s.ended_with for s in sessions] == ["server_shutdown"] * 2
    assert events == ["changed", "done"] and len(calls) == 0


async def test_calls_that_end_on_their_own_end_the_drain_early():
    calls = FakeCalls(1)
    _, drain, events = draining_node(calls, timeout_s=30)
    drain.begin()
    calls.sessions.clear()  # the caller hung up
    assert drain.task is not None
    await asyncio.wait_for(drain.task, 2)
    assert events == ["changed", "done"]


async def test_a_second_sigterm_stops_waiting():
    calls = FakeCalls(1)
    session = calls.live()[0]
    _, drain, events = draining_node(calls, timeout_s=30)
    drain.begin()
    drain.begin()
    assert drain.task is not None
    await asyncio.wait_for(drain.task, 2)
    assert session.ended_with == "server_shutdown" and events == ["changed", "done"]
