"""Capacity of one Hark node: silent calls by level, admission at twice that, talkers.

    .venv/bin/python -m tests.bench.capacity [--levels 1,5,10,20,40] [--hold 15]
        [--client-procs 2] [--ramp-to 40] [--ramp-gap 0.5] [--talkers 1,2,4,6]
        [--workers 1] [--questions 3] [--talker-procs N]

Three parts, each against a real server (`python -m server serve`, real models):

1. Levels, admission by load off and `HARK_MAX_CALLS` out of the way: silent calls are
   added up to each level, then held for `--hold` seconds: the server's CPU (every
   thread, /proc) and RSS, each call's frames received over the window (50 a second
   expected) and its longest gap. CPU and memory per call come from the difference with
   the idle server. After the ramp every call hangs up, and RSS is read again.
2. Admission, on (the defaults) with `HARK_MAX_CALLS` very high: calls are added one
   every `--ramp-gap` s up to `--ramp-to`; how many were admitted and refused (503), then
   over a hold: the worst admitted call's share of frames, and how many calls ended.
3. Talkers (`--talkers`, empty to skip; tests/bench/talkers.py): that many calls at once,
   staggered, each asking `--questions` spoken questions (3); voice-to-voice p50/p95
   (tests/bench/voice_to_voice.py), each stage's median from the server's breakdown, the
   slowest tenth of the turns stage by stage, and which worker each call went to. The
   talkers share the bench's loop, or run in `--talker-procs` processes of their own.

`--workers` is the server's HARK_WORKERS (default 1: one process; with more, its CPU and
RSS are summed over the front and its workers). The silent clients run in
`--client-procs` processes of their own; each sends the cached
Opus silence packet (no encoding) and only notes when each frame arrives. Their CPU is
printed too: they share the machine's cores with the server. It prints; it never fails.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import multiprocessing
import os
import statistics
import time
import urllib.request
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from media.outbound import opus_silence_packet
from server.tools.call_client import CallClient, CallError, mint_client_secret
from tests import server_process
from tests.bench.silent_calls import cpu_seconds
from tests.bench.talkers import talkers

FRAME_S = 0.02
SETTLE_S = 3.0  # after the last call of a level joined: ICE, DTLS, first frames
OPEN_LIMITS = {
    "HARK_MAX_CALLS": "10000",
    "HARK_MAX_CALLS_PER_SUB": "0",
    "HARK_RATE_CALLS_PER_MIN": "100000",
    "HARK_RATE_MINT_PER_MIN": "100000",
    "HARK_RATE_PER_ADDRESS_PER_MIN": "100000",
}


def family(pid: int) -> list[int]:
    """`pid` and its descendants (a front's workers)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def rss_mb(pid: int) -> float:
    total = 0.0
    for member in family(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
    return total


def server_cpu_seconds(pid: int) -> float:
    total = 0.0
    for member in family(pid):
        with contextlib.suppress(OSError):
            total += cpu_seconds(member)
    return total


class SilentCall(CallClient):
    """A call that sends cached silence and notes only when each frame arrives."""

    def __init__(self, url: str, token: str) -> None:
        super().__init__(url, token)
        self.mic.silence_packet = opus_silence_packet()
        self.arrivals: list[float] = []

    async def _record(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError, asyncio.CancelledError):
            while True:
                await track.recv()
                self.arrivals.append(time.monotonic())

    @property
    def ended(self) -> bool:
        return self._pc.connectionState in ("failed", "closed")

    def window(self, t0: float, t1: float) -> tuple[int, float]:
        """Frames received in [t0, t1) and the longest gap there (ms)."""
        times = [t for t in self.arrivals if t0 <= t < t1]
        gaps = [b - a for a, b in itertools.pairwise([t0, *times, t1])]
        return len(times), round(max(gaps) * 1000, 1)


# ---- the client processes ------------------------------------------------------------------


def client_process(conn: Connection, url: str, api_key: str) -> None:
    asyncio.run(_serve_commands(conn, url, api_key))


async def _serve_commands(conn: Connection, url: str, api_key: str) -> None:
    calls: list[SilentCall] = []
    loop = asyncio.get_running_loop()
    while True:
        command: dict[str, Any] = await loop.run_in_executor(None, conn.recv)
        kind = command["kind"]
        if kind == "grow":
            await asyncio.sleep(command.get("offset_s", 0.0))
            refused = failed = 0
            for _ in range(command["add"]):
                call = SilentCall(url, await mint_client_secret(url, api_key, {}))
                try:
                    await call.connect()
                    calls.append(call)
                except CallError as exc:
                    refused += "(503)" in str(exc)
                    failed += "(503)" not in str(exc)
                    await call.close()
                await asyncio.sleep(command.get("gap_s", 0.0))
            conn.send({"refused": refused, "failed": failed, "live": len(calls)})
        elif kind == "measure":
            await asyncio.sleep(max(0.0, command["t0"] - time.monotonic()))
            cpu = time.process_time()
            await asyncio.sleep(max(0.0, command["t1"] - time.monotonic()))
            cpu = time.process_time() - cpu
            windows = [c.window(command["t0"], command["t1"]) for c in calls]
            conn.send(
                {
                    "cpu_s": cpu,
                    "frames": [w[0] for w in windows],
                    "gaps_ms": [w[1] for w in windows],
                    "ended": sum(c.ended for c in calls),
                }
            )
        elif kind == "hangup":
            await asyncio.gather(*(c.hangup() for c in calls), return_exceptions=True)
            calls.clear()
            conn.send({"live": 0})
        else:
            return


class Clients:
    """The client processes, driven level by level."""

    def __init__(self, url: str, api_key: str, procs: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.conns: list[Connection] = []
        self.procs = []
        for _ in range(procs):
            mine, theirs = context.Pipe()
            proc = context.Process(target=client_process, args=(theirs, url, api_key))
            proc.start()
            self.conns.append(mine)
            self.procs.append(proc)

    def ask(self, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for conn, command in zip(self.conns, commands, strict=True):
            conn.send(command)
        return [conn.recv() for conn in self.conns]

    def grow(self, add: int, gap_s: float = 0.0) -> dict[str, int]:
        """`add` calls across the processes, one every `gap_s` overall."""
        n = len(self.conns)
        shares = [add // n + (i < add % n) for i in range(n)]
        replies = self.ask(
            [
                {"kind": "grow", "add": share, "gap_s": gap_s * n, "offset_s": gap_s * i}
                for i, share in enumerate(shares)
            ]
        )
        return {key: sum(r[key] for r in replies) for key in ("refused", "failed", "live")}

    def measure(self, t0: float, t1: float) -> dict[str, Any]:
        replies = self.ask([{"kind": "measure", "t0": t0, "t1": t1}] * len(self.conns))
        return {
            "cpu_s": sum(r["cpu_s"] for r in replies),
            "frames": [f for r in replies for f in r["frames"]],
            "gaps_ms": [g for r in replies for g in r["gaps_ms"]],
            "ended": sum(r["ended"] for r in replies),
        }

    def hangup(self) -> None:
        self.ask([{"kind": "hangup"}] * len(self.conns))

    def close(self) -> None:
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.send({"kind": "exit"})
        for proc in self.procs:
            proc.join(10)
            if proc.is_alive():
                proc.terminate()


def load_gauges(server: server_process.ServerProcess) -> dict[str, float]:
    """The node's measured load as admission sees it, from /metrics."""
    request = urllib.request.Request(
        f"{server.url}/metrics", headers={"Authorization": f"Bearer {server.admin_key}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read().decode()
    gauges = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name.startswith("hark_node_"):
            gauges[name.removeprefix("hark_node_")] = round(float(value), 3)
    return gauges


def wait_for_no_calls(server: server_process.ServerProcess, timeout_s: float = 20.0) -> int:
    """Waits until the node counts no live call; how many it still counts at the end."""
    deadline = time.monotonic() + timeout_s
    while True:
        with urllib.request.urlopen(f"{server.url}/healthz", timeout=10) as response:
            calls = int(json.loads(response.read()).get("calls", 0))
        if calls == 0 or time.monotonic() > deadline:
            return calls
        time.sleep(0.5)


def held(clients: Clients, server: server_process.ServerProcess, hold_s: float) -> dict[str, Any]:
    """The server and the calls over a window of `hold_s` from now."""
    pid = server.process.pid
    t0 = time.monotonic() + 0.5
    t1 = t0 + hold_s
    time.sleep(0.5)
    cpu = server_cpu_seconds(pid)
    window = clients.measure(t0, t1)
    cpu = server_cpu_seconds(pid) - cpu
    load = load_gauges(server)
    expected = hold_s / FRAME_S
    frames = window["frames"]
    return {
        "server_core_percent": round(100 * cpu / hold_s, 1),
        "clients_core_percent": round(100 * window["cpu_s"] / hold_s, 1),
        "frames_percent_median": round(100 * statistics.median(frames) / expected, 1)
        if frames
        else None,
        "frames_percent_min": round(100 * min(frames) / expected, 1) if frames else None,
        "max_gap_ms": max(window["gaps_ms"], default=None),
        "calls_ended": window["ended"],
        "server_rss_mb": round(rss_mb(pid)),
        "load": load,
        "machine_load_avg_1m": round(os.getloadavg()[0], 1),  # other work on the host
    }


# ---- the three parts -----------------------------------------------------------------------


def levels_part(levels: list[int], hold_s: float, procs: int, workers: int) -> None:
    env = {**OPEN_LIMITS, "HARK_ADMISSION_LOAD": "false", "HARK_WORKERS": str(workers)}
    with server_process.running_server(env) as server:
        pid = server.process.pid
        time.sleep(2)
        cpu, start = server_cpu_seconds(pid), time.monotonic()
        time.sleep(5)
        idle_core = (server_cpu_seconds(pid) - cpu) / (time.monotonic() - start)
        rss_before = rss_mb(pid)
        print(f"levels: idle server {100 * idle_core:.1f} % of a core, RSS {rss_before:.0f} MB")
        clients = Clients(server.url, server.api_key, procs)
        try:
            live = 0
            for level in levels:
                grown = clients.grow(level - live)
                live = grown["live"]
                time.sleep(SETTLE_S)
                row = held(clients, server, hold_s)
                per_call = (row["server_core_percent"] - 100 * idle_core) / max(live, 1)
                row = {
                    "level": level,
                    "live": live,
                    "failed": grown["failed"],
                    "server_core_percent_per_call": round(per_call, 2),
                    "clients_core_percent_per_call": round(row["clients_core_percent"] / live, 2),
                    "rss_mb_per_call": round((row["server_rss_mb"] - rss_before) / live, 1),
                    **row,
                }
                print(f"level {json.dumps(row)}", flush=True)
            peak = rss_mb(pid)
            clients.hangup()
            time.sleep(6)  # the heap is trimmed 2 s after the last call ends
            after = rss_mb(pid)
            print(
                f"levels: RSS before the ramp {rss_before:.0f} MB, at its top {peak:.0f} MB, "
                f"6 s after every call ended {after:.0f} MB ({after - rss_before:+.0f} MB)",
                flush=True,
            )
        finally:
            clients.close()


def admission_part(
    ramp_to: int,
    gap_s: float,
    hold_s: float,
    procs: int,
    talker_counts: list[int],
    workers: int,
    questions: int = 3,
    talker_procs: int = 0,
) -> None:
    # Admission by measured load on (the test servers' default is off).
    env = {**OPEN_LIMITS, "HARK_ADMISSION_LOAD": "true", "HARK_WORKERS": str(workers)}
    with server_process.running_server(env) as server:
        clients = Clients(server.url, server.api_key, procs)
        try:
            grown = clients.grow(ramp_to, gap_s)
            time.sleep(SETTLE_S)
            row = {
                "offered": ramp_to,
                "admitted": grown["live"],
                "refused_503": grown["refused"],
                "failed": grown["failed"],
                **held(clients, server, hold_s),
            }
            print(f"admission {json.dumps(row)}", flush=True)
            clients.hangup()
        finally:
            clients.close()
        # The talkers start on an idle node: a silent call still counted would send them
        # to the other worker (new calls go to the one with the fewest).
        left = wait_for_no_calls(server)
        if left:
            print(f"admission: {left} calls still counted after the hangup", flush=True)
        for count in talker_counts:
            report = talkers(server.url, server.api_key, count, questions, talker_procs)
            print(f"talkers {json.dumps(report)}", flush=True)


def numbers(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--levels", default="1,5,10,20,40")
    parser.add_argument("--hold", type=float, default=15.0, help="seconds measured per level")
    parser.add_argument("--client-procs", type=int, default=2)
    parser.add_argument("--ramp-to", type=int, default=0, help="0: twice the top level")
    parser.add_argument("--ramp-gap", type=float, default=0.5)
    parser.add_argument("--talkers", default="1,2,4,6")
    parser.add_argument("--questions", type=int, default=3, help="spoken questions per talker")
    parser.add_argument(
        "--talker-procs",
        type=int,
        default=0,
        help="processes the talkers run in (default 0: the bench's own)",
    )
    parser.add_argument("--skip", default="", help="parts to skip: levels,admission")
    parser.add_argument("--workers", type=int, default=1, help="the server's HARK_WORKERS")
    args = parser.parse_args()
    levels = numbers(args.levels)
    skip = set(args.skip.split(","))
    try:
        if "levels" not in skip:
            levels_part(levels, args.hold, args.client_procs, args.workers)
        if "admission" not in skip:
            ramp_to = args.ramp_to or 2 * max(levels)
            admission_part(
                ramp_to,
                args.ramp_gap,
                args.hold,
                args.client_procs,
                numbers(args.talkers),
                args.workers,
                args.questions,
                args.talker_procs,
            )
    except Exception as exc:  # a benchmark reports, it does not fail
        print(f"capacity: failed: {exc!r}"[:3000])


if __name__ == "__main__":
    main()
