"""Admission by measured load: a node whose event loop lags (or whose frames go out late,
or whose CPU is spent) for a whole window refuses new calls with 503 server_full and
Retry-After, keeps its live calls, admits again once the load is gone, and always admits
a call when it has none; near a limit it lets one call in per window.

The units feed `LoadMonitor.sample` by hand. The end-to-end test overloads a real server
through its test hook (`HARK_TEST_LOOP_LAG_FILE`: while the file exists the server's
event loop really stalls on every tick) with a real aiortc call live on it.
"""

from __future__ import annotations

import asyncio
import re
import tempfile
import time
from pathlib import Path

import aiohttp
import pytest
from aiortc import RTCPeerConnection

from media.outbound import OutboundAudioTrack
from media.pacing import SLIP_BUDGET_S, PacingSlip
from server.calls.admission import AdmissionGuard
from server.calls.load import (
    SETTLE_S,
    TEST_LAG_ENV,
    WORKER_COUNT_ENV,
    LoadLimits,
    LoadMonitor,
)
from server.errors import Overloaded
from server.tools.call_client import CallClient, CallError, mint_client_secret
from tests import server_process

LIMITS = LoadLimits(loop_lag_ms=50, pacing_slip=0.05, cpu=0.9, loop_busy=0.85, window_s=2.0)


def ticks(
    monitor: LoadMonitor,
    seconds: float,
    *,
    lag_s: float = 0.0,
    cpu: float = 0.0,
    busy: float = 0.0,
    start: float = 0.0,
) -> float:
    """Feed `seconds` of 100 ms ticks; returns the time reached."""
    now = start
    while now < start + seconds - 1e-9:
        now += 0.1
        monitor.sample(lag_s, cpu * 0.1 * monitor.reading().cores, 0.1, now, busy * 0.1)
    return now


def guard(monitor: LoadMonitor) -> AdmissionGuard:
    return AdmissionGuard(None, memory_limit=0.9, queues=dict, max_queue=0, load=monitor)


def test_sustained_loop_lag_refuses_only_after_the_window(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [0.0]
    monkeypatch.setattr("server.calls.load.time.monotonic", lambda: clock[0])
    monitor = LoadMonitor(LIMITS, PacingSlip())
    clock[0] = ticks(monitor, 5, lag_s=0.3)
    assert monitor.reading().loop_lag_ms > 200
    with pytest.raises(Overloaded) as refused:
        guard(monitor).check(live_calls=3)
    assert refused.value.code == "server_full"
    assert refused.value.retry_after_s == 5
    assert "event-loop lag over its limit" in refused.value.message
    guard(monitor).check(live_calls=0)  # a node with no call always admits one
    # The lag stops: once the smoothed lag is under the limit, calls are admitted again.
    clock[0] = ticks(monitor, 3, start=clock[0])
    assert monitor.reading().over is None
    guard(monitor).check(live_calls=3)


def test_a_short_stall_refuses_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [0.0]
    monkeypatch.setattr("server.calls.load.time.monotonic", lambda: clock[0])
    monitor = LoadMonitor(LIMITS, PacingSlip())
    now = ticks(monitor, 1, lag_s=0.4)  # a second of heavy lag: over the limit, not for long
    clock[0] = ticks(monitor, 0.5, start=now)
    assert monitor.reading().over is None
    guard(monitor).check(live_calls=5)


def test_near_a_limit_one_call_joins_per_window(monkeypatch: pytest.MonkeyPatch) -> None:
    """A node filling up (its loop busy over NEAR of the limit) lets one call in, then
    waits a window for that call's load to show before the next: a ramp stops near
    capacity."""
    clock = [0.0]
    monkeypatch.setattr("server.calls.load.time.monotonic", lambda: clock[0])
    monitor = LoadMonitor(LIMITS, PacingSlip())
    clock[0] = ticks(monitor, 5, busy=0.7)  # near 0.85, under it
    assert monitor.reading().over is None
    guard(monitor).check(live_calls=14)  # 0.05 a call: one more stays under the limit
    with pytest.raises(Overloaded, match="event-loop busy near its limit and a call joined"):
        guard(monitor).check(live_calls=15)
    clock[0] = ticks(monitor, LIMITS.window_s + 0.1, busy=0.7, start=clock[0])
    guard(monitor).check(live_calls=15)  # a window later the next one may join
    clock[0] = ticks(monitor, 3, busy=0.3, start=clock[0])  # calmer: back to back again
    guard(monitor).check(live_calls=16)
    guard(monitor).check(live_calls=17)


def test_near_a_limit_a_call_that_would_cross_it_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Four calls keep the loop 0.8 busy (0.2 each): a fifth would take it to 1.0, past
    0.85, so it is refused before its load shows; forty calls at 0.8 (0.02 each) leave
    room for one more."""
    clock = [0.0]
    monkeypatch.setattr("server.calls.load.time.monotonic", lambda: clock[0])
    monitor = LoadMonitor(LIMITS, PacingSlip())
    clock[0] = ticks(monitor, 5, busy=0.8)
    with pytest.raises(
        Overloaded, match=r"event-loop busy would reach (99|100)% with one more call"
    ):
        guard(monitor).check(live_calls=4)
    guard(monitor).check(live_calls=40)


def test_calls_whose_load_has_not_shown_yet_count_in_the_projection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A ramp: ten calls keep the loop 0.55 busy, but four of them joined within
    SETTLE_S, so the six that show carry it (~0.09 each) and an eleventh would take it to
    ~0.95, past 0.85: refused. Once they have settled at the same load (0.055 each), room
    for more. (Without the settling calls the projection said 0.6 and let the ramp on.)"""
    clock = [0.0]
    monkeypatch.setattr("server.calls.load.time.monotonic", lambda: clock[0])
    monitor = LoadMonitor(LIMITS, PacingSlip())
    clock[0] = ticks(monitor, 3, busy=0.3)
    for live in range(6, 10):  # four calls join, back to back: far from the limit
        guard(monitor).check(live_calls=live)
    clock[0] = ticks(monitor, 2, busy=0.55, start=clock[0])
    with pytest.raises(Overloaded, match=r"event-loop busy would reach 9\d% with one more"):
        guard(monitor).check(live_calls=10)
    clock[0] = ticks(monitor, SETTLE_S, busy=0.55, start=clock[0])
    guard(monitor).check(live_calls=10)


def test_a_worker_measures_its_cpu_against_its_share_of_the_cores(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two workers on the node: each counts on half the cores, so one worker using all
    of its half is over the CPU limit (against every core it looked half idle)."""
    clock = [0.0]
    monkeypatch.setattr("server.calls.load.time.monotonic", lambda: clock[0])
    monkeypatch.setattr("server.calls.load.usable_cores", lambda: 4)
    monkeypatch.setenv(WORKER_COUNT_ENV, "2")
    monitor = LoadMonitor(LIMITS, PacingSlip())
    assert monitor.reading().cores == 2
    now = 0.0
    for _ in range(60):  # two cores' worth of CPU each 100 ms tick, for 6 s
        now += 0.1
        monitor.sample(0.0, 2 * 0.1, 0.1, now)
    clock[0] = now
    assert monitor.reading().cpu == pytest.approx(1.0, abs=0.02)
    assert monitor.reading().over == "CPU"
    monkeypatch.setenv(WORKER_COUNT_ENV, "1")
    assert LoadMonitor(LIMITS, PacingSlip()).reading().cores == 4


def test_moderate_lag_of_a_busy_machine_slows_no_admission(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Tens of ms of lag (a loaded test machine) under the limit: calls join back to back."""
    clock = [0.0]
    monkeypatch.setattr("server.calls.load.time.monotonic", lambda: clock[0])
    monitor = LoadMonitor(LIMITS, PacingSlip())
    clock[0] = ticks(monitor, 5, lag_s=0.04)
    for live in range(1, 6):
        guard(monitor).check(live_calls=live)


def test_cpu_and_pacing_slip_are_judged_too(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [0.0]
    monkeypatch.setattr("server.calls.load.time.monotonic", lambda: clock[0])
    monitor = LoadMonitor(LIMITS, PacingSlip())
    clock[0] = ticks(monitor, 6, cpu=1.0)
    assert monitor.reading().over == "CPU"

    pacing = PacingSlip()
    monitor = LoadMonitor(LIMITS, pacing)
    now = 0.0
    for _ in range(60):  # 6 s in which a fifth of the frames go out late
        for n in range(5 * 4):
            pacing.note(SLIP_BUDGET_S * 2 if n % 5 == 0 else 0.001)
        now += 0.1
        monitor.sample(0.0, 0.0, 0.1, now)
    clock[0] = now
    reading = monitor.reading()
    assert reading.over == "outbound pacing slip"
    assert reading.pacing_slip == pytest.approx(0.2, abs=0.02)
    assert reading.worst_slip_ms == pytest.approx(SLIP_BUDGET_S * 2000)


def test_a_loop_busy_all_the_time_refuses_and_a_half_busy_one_does_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [0.0]
    monkeypatch.setattr("server.calls.load.time.monotonic", lambda: clock[0])
    monitor = LoadMonitor(LIMITS, PacingSlip())
    clock[0] = ticks(monitor, 5, busy=0.5)
    guard(monitor).check(live_calls=3)
    guard(monitor).check(live_calls=4)  # half busy is not near the limit
    clock[0] = ticks(monitor, 6, busy=0.97, start=clock[0])
    with pytest.raises(Overloaded, match="event-loop busy over its limit"):
        guard(monitor).check(live_calls=5)


async def test_the_monitor_sees_a_loop_spinning_on_the_cpu() -> None:
    """A real monitor on this loop, and a task that keeps the loop's thread on the CPU
    90 ms of every 100 ms."""
    monitor = LoadMonitor(LIMITS, PacingSlip())
    monitor.start()
    try:
        until = time.monotonic() + 3
        while time.monotonic() < until:
            spin = time.thread_time() + 0.09
            while time.thread_time() < spin:
                pass
            await asyncio.sleep(0.01)
        assert monitor.reading().loop_busy > 0.5
    finally:
        await monitor.stop()


def test_limits_at_zero_check_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [0.0]
    monkeypatch.setattr("server.calls.load.time.monotonic", lambda: clock[0])
    monitor = LoadMonitor(LoadLimits(0, 0, 0, 0, 2.0), PacingSlip())
    clock[0] = ticks(monitor, 5, lag_s=1.0, cpu=1.0, busy=1.0)
    assert monitor.reading().over is None


async def test_a_late_outbound_track_notes_its_slip() -> None:
    now = [0.0]
    pacing = PacingSlip()
    track = OutboundAudioTrack(clock=lambda: now[0], pacing=pacing)
    await track.recv()  # starts the clock
    now[0] = 0.02  # on time
    await track.recv()
    now[0] = 0.5  # the sender came back 460 ms late
    await track.recv()
    reading = pacing.take()
    assert reading.frames == 2 and reading.slipped == 1
    assert reading.worst_s == pytest.approx(0.46)
    assert pacing.take().frames == 0  # a reading resets the tally


# ---- a real server, overloaded through its test hook ---------------------------------------


async def post_offer(url: str, api_key: str) -> aiohttp.ClientResponse:
    """POST a real aiortc offer; the response, read."""
    pc = RTCPeerConnection()
    pc.addTransceiver("audio")
    pc.createDataChannel("oai-events")
    await pc.setLocalDescription(await pc.createOffer())
    try:
        async with aiohttp.ClientSession() as http:
            response = await http.post(
                f"{url}/v1/realtime/calls",
                data=pc.localDescription.sdp,
                headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/sdp"},
            )
            await response.read()
            if response.status == 201:  # admitted: hang that call up at once
                await http.delete(
                    f"{url}{response.headers['Location']}",
                    headers={"Authorization": f"Bearer {api_key}"},
                )
            return response
    finally:
        await pc.close()


async def metric(url: str, admin_key: str, name: str) -> float:
    async with aiohttp.ClientSession() as http:
        async with http.get(
            f"{url}/metrics", headers={"Authorization": f"Bearer {admin_key}"}
        ) as response:
            for line in (await response.text()).splitlines():
                if line.startswith(name + " "):
                    return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def test_an_overloaded_node_answers_503_then_admits_again() -> None:
    lag_file = Path(tempfile.mkdtemp(prefix="hark-lag-")) / "lag_ms"
    env = {
        TEST_LAG_ENV: str(lag_file),
        "HARK_ADMISSION_LOAD": "true",
        "HARK_ADMISSION_WINDOW": "1",
    }
    with server_process.running_server(env) as server:
        asyncio.run(overload(server, lag_file))


def set_lag(lag_file: Path, ms: int | None) -> None:
    """Stall the server's loop `ms` per tick from now on (None: stop)."""
    if ms is None:
        lag_file.unlink(missing_ok=True)
    else:
        lag_file.write_text(str(ms))


async def overload(server: server_process.ServerProcess, lag_file: Path) -> None:
    url, key = server.url, server.api_key
    live = CallClient(url, await mint_client_secret(url, key, {}))
    await live.connect()
    try:
        set_lag(lag_file, 150)  # every 100 ms tick the server's loop stalls 150 ms
        deadline = time.monotonic() + 30
        while await metric(url, server.admin_key, "hark_node_overloaded") != 1.0:
            assert time.monotonic() < deadline, "the lag never registered"
            await asyncio.sleep(0.3)
        assert await metric(url, server.admin_key, "hark_node_loop_lag_seconds") > 0.06
        refused = await post_offer(url, key)
        assert refused.status == 503
        assert refused.headers["Retry-After"] == "5"
        error = (await refused.json())["error"]
        assert error["type"] == "server_error"
        assert error["code"] == "server_full"
        # The stalled loop is felt as lag, and by the live call's frames as pacing slip.
        assert re.search(r"(event-loop lag|outbound pacing slip) over its limit", error["message"])
        assert live.call_path is not None and "session.closed" not in live.types()
        set_lag(lag_file, None)  # the load is gone: calls are admitted again
        heard = len(live.recorder.times)
        deadline = time.monotonic() + 30
        while True:  # as the lag decays, a real call joins again
            again = CallClient(url, await mint_client_secret(url, key, {}))
            try:
                await again.connect()
                break
            except CallError as exc:
                await again.close()
                assert "(503)" in str(exc), exc
                assert time.monotonic() < deadline, "never admitted again"
                await asyncio.sleep(0.5)
        assert "session.created" in again.types()
        await again.hangup()
        assert len(live.recorder.times) > heard  # the live call went on all along
    finally:
        set_lag(lag_file, None)
        await live.hangup()
