"""Capacity of one Hark node: silent calls by level, admission at twice that, talkers.

    .venv/bin/python -m tests.bench.capacity [--levels 1,5,10,20,40] [--hold 15]
        [--client-procs 2] [--ramp-to 40] [--ramp-gap 0.5] [--talkers 1,2,4,6]
        [--workers 1] [--questions 3] [--talker-procs N] [--peers hark,pipecat]

Three parts, each against a real server (`python -m server serve`, real models):

1. Levels, admission by load off and `HARK_MAX_CALLS` out of the way: silent calls are
   added up to each level, then held for `--hold` seconds: the server's CPU (every
   thread, /proc) and RSS, each call's frames received over the window (50 a second
   expected) and its longest gap. CPU and memory per call come from the difference with
   the idle server. After the ramp every call hangs up, and RSS is read again.
   `--peers hark,pipecat` runs the same levels, in the same run, against Pipecat's
   SmallWebRTC bot on the same engines (tests/bench/pipecat/bot.py; its own venv, made
   by tests/bench/pipecat/setup.sh): the bot's process is measured as Hark's is. Then
   each peer's rows side by side: calls per process (the highest level where every call
   kept >= 98 % of its frames) and the server's CPU per silent call there.
2. Admission, on (the defaults) with `HARK_MAX_CALLS` very high: calls are added one
   every `--ramp-gap` s up to `--ramp-to`; how many were admitted and refused (503), then
   over a hold: the worst admitted call's share of frames, and how many calls ended.
3. Talkers (`--talkers`, empty to skip; tests/bench/talkers.py): that many calls at once,
   staggered, each asking `--questions` spoken questions (3); voice-to-voice p50/p95
   (tests/bench/voice_to_voice.py), each stage's median from the server's breakdown, the
   slowest tenth of the turns stage by stage, and which worker each call went to. The
   talkers share the bench's loop, or run in `--talker-procs` processes of their own.

`--workers` is the server's HARK_WORKERS (default 1: one process; with more, its CPU and
RSS are summed over the front and its workers). The silent clients
(tests/bench/silent_clients.py) run in `--client-procs` processes of their own; each
sends the cached Opus silence packet (no encoding) and only notes when each frame
arrives. Their CPU is printed too: they share the machine's cores with the server. It
prints; it never fails.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests import server_process
from tests.bench.peers.pipecat import PipecatPeer
from tests.bench.silent_calls import cpu_seconds
from tests.bench.silent_clients import Clients
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


def held(
    clients: Clients,
    pid: int,
    hold_s: float,
    gauges: Callable[[], dict[str, float]] | None = None,
) -> dict[str, Any]:
    """The server (`pid` and its descendants) and the calls over a window of `hold_s` from
    now; `gauges`: the server's own load figures, read at the end (Hark's /metrics)."""
    t0 = time.monotonic() + 0.5
    t1 = t0 + hold_s
    time.sleep(0.5)
    cpu = server_cpu_seconds(pid)
    window = clients.measure(t0, t1)
    cpu = server_cpu_seconds(pid) - cpu
    load = gauges() if gauges is not None else None
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
        **({"load": load} if load is not None else {}),
        "machine_load_avg_1m": round(os.getloadavg()[0], 1),  # other work on the host
    }


# ---- the three parts -----------------------------------------------------------------------


def ramp_levels(
    peer: str,
    target: dict[str, Any],
    pid: int,
    levels: list[int],
    hold_s: float,
    procs: int,
    gauges: Callable[[], dict[str, float]] | None = None,
) -> list[dict[str, Any]]:
    """Silent calls to `target` added up to each level and held; the server is `pid` (and
    its descendants). Prints and returns a row per level."""
    time.sleep(2)
    cpu, start = server_cpu_seconds(pid), time.monotonic()
    time.sleep(5)
    idle_core = (server_cpu_seconds(pid) - cpu) / (time.monotonic() - start)
    rss_before = rss_mb(pid)
    print(
        f"levels {peer}: idle server {100 * idle_core:.1f} % of a core, RSS {rss_before:.0f} MB",
        flush=True,
    )
    rows = []
    clients = Clients(target, procs)
    try:
        live = 0
        for level in levels:
            grown = clients.grow(level - live)
            live = grown["live"]
            time.sleep(SETTLE_S)
            row = held(clients, pid, hold_s, gauges)
            per_call = (row["server_core_percent"] - 100 * idle_core) / max(live, 1)
            row = {
                "peer": peer,
                "level": level,
                "live": live,
                "failed": grown["failed"],
                **({"errors": grown["errors"]} if grown["errors"] else {}),
                "server_core_percent_per_call": round(per_call, 2),
                "clients_core_percent_per_call": round(
                    row["clients_core_percent"] / max(live, 1), 2
                ),
                "rss_mb_per_call": round((row["server_rss_mb"] - rss_before) / max(live, 1), 1),
                **row,
            }
            rows.append(row)
            print(f"level {json.dumps(row)}", flush=True)
        peak = rss_mb(pid)
        clients.hangup()
        time.sleep(6)  # Hark trims its heap 2 s after the last call ends
        after = rss_mb(pid)
        print(
            f"levels {peer}: RSS before the ramp {rss_before:.0f} MB, at its top {peak:.0f} MB, "
            f"6 s after every call ended {after:.0f} MB ({after - rss_before:+.0f} MB)",
            flush=True,
        )
    finally:
        clients.close()
    return rows


def levels_part(levels: list[int], hold_s: float, procs: int, workers: int) -> list[dict[str, Any]]:
    env = {**OPEN_LIMITS, "HARK_ADMISSION_LOAD": "false", "HARK_WORKERS": str(workers)}
    with server_process.running_server(env) as server:
        target = {"peer": "hark", "url": server.url, "api_key": server.api_key}
        return ramp_levels(
            "hark", target, server.process.pid, levels, hold_s, procs, lambda: load_gauges(server)
        )


def pipecat_levels_part(levels: list[int], hold_s: float, procs: int) -> list[dict[str, Any]]:
    """The same levels against Pipecat's SmallWebRTC bot (tests/bench/peers/pipecat.py
    starts it, with llama.cpp's server, on Hark's engines and weights). The bot's process
    (and its descendants, if any) is measured; the LLM server beside it serves no silent
    call and is left out, though its RSS is printed."""
    peer = PipecatPeer()
    with peer.running():
        assert peer.url is not None
        print(
            f"levels pipecat: pipecat-ai {peer.info.get('version')}, started in "
            f"{peer.info.get('start_s')} s; llama.cpp server beside it (not counted): "
            f"RSS {rss_mb(peer.pids['llm']):.0f} MB",
            flush=True,
        )
        target = {"peer": "pipecat", "url": peer.url}
        return ramp_levels("pipecat", target, peer.pids["bot"], levels, hold_s, procs)


def kept(row: dict[str, Any]) -> bool:
    """Every call of the level connected and received at least 98 % of its frames."""
    least = row["frames_percent_min"]
    return row["live"] == row["level"] and least is not None and least >= 98.0


def summary(rows: dict[str, list[dict[str, Any]]]) -> None:
    """Each peer's rows side by side, then calls per process and CPU per silent call."""
    peers = list(rows)
    print("silent calls by level: server % of a core per call, frames median/worst, gap, RSS")
    for level in sorted({r["level"] for got in rows.values() for r in got}):
        cells = []
        for peer in peers:
            row = next((r for r in rows[peer] if r["level"] == level), None)
            cells.append(
                f"{peer}: -"
                if row is None
                else f"{peer}: {row['live']} live, {row['server_core_percent_per_call']:.2f} %"
                f"/call ({row['server_core_percent']:.0f} %), frames {row['frames_percent_median']}"
                f"/{row['frames_percent_min']} %, gap {row['max_gap_ms']} ms, "
                f"RSS {row['server_rss_mb']} MB, load {row['machine_load_avg_1m']}"
            )
        print(f"  {level:>4} | " + " | ".join(cells), flush=True)
    for peer in peers:
        good = [r for r in rows[peer] if kept(r)]
        if not good:
            print(f"{peer}: no level kept >= 98 % of frames for every call", flush=True)
            continue
        top = max(good, key=lambda r: r["level"])
        listed = ", ".join(f"{r['server_core_percent_per_call']:.2f}" for r in rows[peer])
        print(
            f"{peer}: calls per process (every call >= 98 % of frames): {top['level']}; "
            f"CPU per silent call there: {top['server_core_percent_per_call']:.2f} % of a core "
            f"(by level: {listed})",
            flush=True,
        )


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
        target = {"peer": "hark", "url": server.url, "api_key": server.api_key}
        clients = Clients(target, procs)
        try:
            grown = clients.grow(ramp_to, gap_s)
            time.sleep(SETTLE_S)
            row = {
                "offered": ramp_to,
                "admitted": grown["live"],
                "refused_503": grown["refused"],
                "failed": grown["failed"],
                **held(clients, server.process.pid, hold_s, lambda: load_gauges(server)),
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
    parser.add_argument(
        "--peers",
        default="hark",
        help="whose silent-call levels to measure, in this order: hark,pipecat (Pipecat's "
        "SmallWebRTC bot on the same engines; admission and talkers are Hark's alone)",
    )
    args = parser.parse_args()
    levels = numbers(args.levels)
    skip = set(args.skip.split(","))
    rows: dict[str, list[dict[str, Any]]] = {}
    for peer in [p.strip() for p in args.peers.split(",") if p.strip()]:
        if "levels" in skip:
            break
        try:
            if peer == "pipecat":
                rows[peer] = pipecat_levels_part(levels, args.hold, args.client_procs)
            elif peer == "hark":
                rows[peer] = levels_part(levels, args.hold, args.client_procs, args.workers)
            else:
                print(f"capacity: unknown peer {peer!r} (hark, pipecat)", flush=True)
        except Exception as exc:  # a benchmark reports, it does not fail
            print(f"capacity: {peer} levels failed: {exc!r}"[:3000], flush=True)
    if rows:
        summary(rows)
    try:
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
