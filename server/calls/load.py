"""The node's measured load: event-loop lag, outbound pacing slip and process CPU.

A static call cap is right only on the machine it was tuned on. What says a node is full
is what its calls feel: the event loop waking late (every 20 ms frame waits on it), the
paced outbound frames going out behind their slots, the process's CPU near the cores it
may use, the loop thread busy (running, or runnable and waiting for a core that other
work holds) nearly all the time. `LoadMonitor` samples them in one cheap task (a 100 ms
sleep that measures how late it woke, `time.process_time()` and `time.thread_time()`
deltas, the thread's schedstat run-queue wait, the tally the outbound tracks keep in
`media.pacing`), smooths them, and says the node is overloaded only when a signal has
stayed over its limit for a whole window, so a single hiccup (a model loading, a busy
test machine) refuses nothing.

A call's load shows only seconds after it is admitted (ICE, DTLS, its first frames,
then the smoothing), so a ramp of calls would be let in far past the cliff before any
signal moved. Calls admitted less than `SETTLE_S` ago are therefore counted as settling:
the gradual signals (CPU, loop busy) are projected from the calls whose load already
shows (value x (live + 1) / (live - settling)), and a call that would take the node past
a limit is refused before its load shows. A worker of a node with several measures its
CPU against its share of the cores (`HARK_WORKER_COUNT`, set by the supervisor): the
workers share them, and against all of them one worker's CPU never looked full.

`HARK_TEST_LOOP_LAG_FILE` is a test hook: while the file it names exists, the sampler
blocks the event loop for the milliseconds written in it on every tick, a real stall
that every call on the node feels, so tests can overload a node on demand.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from media.pacing import PACING, PacingSlip
from server.config import Config, usable_cores

log = logging.getLogger("hark.load")

TICK_S = 0.1
# Weight of the newest tick in the smoothed lag and CPU (about a second's memory).
SMOOTHING = 0.1
TEST_LAG_ENV = "HARK_TEST_LOOP_LAG_FILE"
# Past this share of a limit a node is filling up: one new call per window from then on.
# Only the gradual signals have one: lag and slip come at the cliff, and a busy machine
# (a test suite) shows tens of ms of lag with nothing wrong.
NEAR = 0.7
SCHEDSTAT = Path("/proc/thread-self/schedstat")
# Seconds after its admission until a call's load shows in the smoothed signals.
SETTLE_S = 3.0
WORKER_COUNT_ENV = "HARK_WORKER_COUNT"  # set by server/workers/supervisor.py


@dataclass(frozen=True)
class LoadLimits:
    """Over any of these for `window_s` seconds, a node is overloaded (0: not checked)."""

    loop_lag_ms: float = 60.0
    pacing_slip: float = 0.05  # share of outbound frames later than media.pacing's budget
    cpu: float = 0.9  # share of the cores this process may run on
    # Share of the time the event-loop thread runs or waits for a core to run on.
    loop_busy: float = 0.7
    window_s: float = 2.0

    @classmethod
    def from_config(cls, config: Config) -> LoadLimits:
        return cls(
            loop_lag_ms=config.admission_loop_lag_ms,
            pacing_slip=config.admission_pacing_slip,
            cpu=config.admission_cpu,
            loop_busy=config.admission_loop_busy,
            window_s=config.admission_window_s,
        )


@dataclass(frozen=True)
class LoadReading:
    loop_lag_ms: float  # smoothed oversleep of the sampler's tick
    pacing_slip: float  # smoothed share of frames sent late
    worst_slip_ms: float  # the latest frame of the last tick
    cpu: float  # smoothed share of the usable cores
    loop_busy: float  # smoothed share of time the loop thread ran or waited to run
    cores: float  # the cores this process may count on (its share of a node's)
    over: str | None  # the signal over its limit for a whole window, if any


def run_queue_wait_s() -> float:
    """Seconds the calling thread has spent runnable but waiting for a core (Linux's
    schedstat; 0 where there is none): CPU the loop wanted and did not get."""
    try:
        return int(SCHEDSTAT.read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


def worker_cores() -> float:
    """The cores this process may count on: those it may run on, shared among the
    node's workers when it is one of several."""
    try:
        workers = max(1, int(os.environ.get(WORKER_COUNT_ENV, "1") or 1))
    except ValueError:
        workers = 1
    return max(1, usable_cores()) / workers


class LoadMonitor:
    """Samples the node's load every `TICK_S` while started."""

    def __init__(self, limits: LoadLimits, pacing: PacingSlip = PACING) -> None:
        self.limits = limits
        self._pacing = pacing
        self._cores = worker_cores()
        self._lag_ms = 0.0
        self._slip = 0.0
        self._worst_ms = 0.0
        self._cpu = 0.0
        self._busy = 0.0
        self._over_since: dict[str, float] = {}
        self._near_since: dict[str, float] = {}
        self._admitted_at = -float("inf")
        self._settling: deque[float] = deque()  # when calls still settling were admitted
        self._task: asyncio.Task[None] | None = None
        test_lag = os.environ.get(TEST_LAG_ENV, "")
        self._test_lag_file = Path(test_lag) if test_lag else None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="load-monitor")
            if self._test_lag_file is not None:
                hook = self._test_lag_file
                log.warning("test hook on: the event loop stalls while %s exists", hook)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @classmethod
    def for_node(cls, config: Config) -> LoadMonitor:
        """The node's monitor (it runs, for /metrics, even with HARK_ADMISSION_LOAD off)."""
        return cls(LoadLimits.from_config(config))

    def reading(self) -> LoadReading:
        return LoadReading(
            loop_lag_ms=self._lag_ms,
            pacing_slip=self._slip,
            worst_slip_ms=self._worst_ms,
            cpu=self._cpu,
            loop_busy=self._busy,
            cores=self._cores,
            over=self._sustained(time.monotonic()),
        )

    def sample(
        self, lag_s: float, cpu_s: float, wall_s: float, now: float, loop_s: float = 0.0
    ) -> None:
        """Fold one tick in: the sampler's oversleep, the process's CPU seconds over
        `wall_s`, and the seconds its loop thread ran or waited on a run queue."""
        pacing = self._pacing.take()
        slip = pacing.slipped / pacing.frames if pacing.frames else 0.0
        self._lag_ms += SMOOTHING * (max(0.0, lag_s) * 1000 - self._lag_ms)
        self._slip += SMOOTHING * (slip - self._slip)
        self._worst_ms = max(0.0, pacing.worst_s) * 1000
        if wall_s > 0:
            self._cpu += SMOOTHING * (cpu_s / wall_s / self._cores - self._cpu)
            self._busy += SMOOTHING * (min(1.0, loop_s / wall_s) - self._busy)
        for name, value, limit, near in self._signals():
            for since, share in ((self._over_since, 1.0), (self._near_since, near)):
                if limit and value > limit * share:
                    since.setdefault(name, now)
                else:
                    since.pop(name, None)

    def judge(self, live_calls: int = 0) -> str | None:
        """Why a new call must wait now, or None (and the call is noted as admitted).

        Over a limit for the window: refused. A call that would take the CPU or the
        loop's busy share past its limit, projected from the calls whose load already
        shows (those admitted within `SETTLE_S` have not shown theirs yet), is refused
        before its load shows. Over `NEAR` of such a limit for the window (lag and slip
        have no such stage), the node is filling up: one call joins per window, so each
        new call's load shows before the next is let in; a ramp of calls then stops near
        capacity instead of past it."""
        now = time.monotonic()
        over = self._sustained(now)
        if over is not None:
            return f"{over} over its limit"
        while self._settling and now - self._settling[0] >= SETTLE_S:
            self._settling.popleft()
        if live_calls > 0:
            shown = max(1, live_calls - len(self._settling))
            for name, value, limit, near in self._signals():
                projected = value * (live_calls + 1) / shown
                if near < 1.0 and limit and projected > limit:
                    return f"{name} would reach {projected:.0%} with one more call"
        near = self._sustained(now, self._near_since)
        since = now - self._admitted_at
        if near is not None and since < self.limits.window_s:
            return f"{near} near its limit and a call joined {since:.1f} s ago"
        self._admitted_at = now
        self._settling.append(now)
        return None

    def _signals(self) -> list[tuple[str, float, float, float]]:
        """(name, smoothed value, limit, share of the limit that counts as near)."""
        limits = self.limits
        return [
            ("event-loop lag", self._lag_ms, limits.loop_lag_ms, 1.0),
            ("outbound pacing slip", self._slip, limits.pacing_slip, 1.0),
            ("CPU", self._cpu, limits.cpu, NEAR),
            ("event-loop busy", self._busy, limits.loop_busy, NEAR),
        ]

    def _sustained(self, now: float, since: dict[str, float] | None = None) -> str | None:
        """The first signal over its limit (or near it) for a whole window."""
        for name, at in (self._over_since if since is None else since).items():
            if now - at >= self.limits.window_s:
                return name
        return None

    async def _run(self) -> None:
        cpu_at, wall_at = time.process_time(), time.monotonic()
        loop_at = time.thread_time() + run_queue_wait_s()
        while True:
            await asyncio.sleep(TICK_S)
            now = time.monotonic()
            cpu = time.process_time()
            loop = time.thread_time() + run_queue_wait_s()  # this task runs on the loop
            self.sample(now - wall_at - TICK_S, cpu - cpu_at, now - wall_at, now, loop - loop_at)
            cpu_at, wall_at, loop_at = cpu, now, loop
            self._stall_for_test()

    def _stall_for_test(self) -> None:
        if self._test_lag_file is None:
            return
        try:
            ms = float(self._test_lag_file.read_text().strip() or 0)
        except (OSError, ValueError):
            return
        time.sleep(ms / 1000)  # deliberately on the loop: the stall the test asked for
