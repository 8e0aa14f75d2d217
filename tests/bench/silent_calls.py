"""CPU per silent call: real aiortc calls that send nothing but silence to one Hark server.

    .venv/bin/python -m tests.bench.silent_calls [--calls 5] [--seconds 20] [--base DIR]

Starts the server as a user does (`python -m server serve`, real models), opens `--calls`
WebRTC calls from this process (each a `CallClient`: Opus silence up, the server's
silence down), and reads the server's CPU time (every thread, /proc/<pid>/stat) over
`--seconds` once the calls have settled, and over as long with no call at all: CPU per
call is the difference over the number of calls. Also printed: the frames each client
received (a silent call still gets its 50 frames a second) and the clients' own CPU.

`--py-spy` then samples the server for as long with py-spy and prints the top frames.
`--base DIR` measures another checkout first (e.g. `git archive <commit> | tar -x -C
DIR`: its server and media/ run, the clients stay this checkout's), so before and after
come from one run on the same machine; `--rounds N` alternates them N times and prints
medians. It prints; it never fails.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from media import outbound
from server.tools.call_client import CallClient, mint_client_secret
from tests import server_process

TICKS = os.sysconf("SC_CLK_TCK")
IDLE_FRAMES = {"EpollSelector.select", "Condition.wait", "Event.wait", "Queue.get"}
IDLE_S = 5.0  # the server with no call: next to nothing, measured briefly


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, all its threads included."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def py_spy_top(raw: Path, n: int = 15) -> str:
    """The `n` frames where most samples were (self time), from py-spy's collapsed stacks."""
    own: collections.Counter[str] = collections.Counter()
    total = idle = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        frame = stack.split(";")[-1]
        if frame.split(" ")[0] in IDLE_FRAMES:  # a thread waiting, not working
            idle += int(count)
            continue
        total += int(count)
        own[frame] += int(count)
    rows = [f"  {100 * c / max(total, 1):5.1f}%  {frame}" for frame, c in own.most_common(n)]
    head = f"py-spy: {total} busy samples (+{idle} waiting), self time, all threads"
    return "\n".join([head, *rows])


async def measure(
    url: str, api_key: str, pid: int, calls: int, seconds: float, spy: bool = False
) -> dict[str, Any]:
    await asyncio.sleep(2)
    idle_start = cpu_seconds(pid)
    await asyncio.sleep(IDLE_S)
    idle = (cpu_seconds(pid) - idle_start) * seconds / IDLE_S
    clients = []
    for _ in range(calls):
        client = CallClient(url, await mint_client_secret(url, api_key, {}))
        # Cheap clients: they share the cores with the server being measured.
        client.mic.silence_packet = outbound.opus_silence_packet()
        await client.connect()
        clients.append(client)
    await asyncio.sleep(3)  # past ICE, DTLS and the first frames
    frames_before = [len(c.recorder.chunks) for c in clients]
    mine_start, start = time.process_time(), cpu_seconds(pid)
    await asyncio.sleep(seconds)
    busy = cpu_seconds(pid) - start
    mine = time.process_time() - mine_start
    received = [len(c.recorder.chunks) - n for c, n in zip(clients, frames_before, strict=True)]
    profile = None
    if spy:  # after the measured window: py-spy's sampling is not in those figures
        raw = Path(tempfile.mkdtemp(prefix="hark-spy-")) / "stacks.txt"
        command = [shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")]
        command += ["record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate"]
        command += ["200", "--nonblocking", "--threads", "--format", "raw", "-o", str(raw)]
        spied = await asyncio.create_subprocess_exec(
            *command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        _, err = await spied.communicate()
        profile = py_spy_top(raw) if raw.exists() else f"py-spy failed: {err.decode()[-500:]}"
    for client in clients:
        await client.hangup()
    per_call = (busy - idle) / calls / seconds
    return {
        "calls": calls,
        "seconds": seconds,
        "server_idle_core_percent": round(100 * idle / seconds, 2),
        "server_core_percent": round(100 * busy / seconds, 2),
        "server_core_percent_per_call": round(100 * per_call, 2),
        "clients_core_percent_per_call": round(100 * mine / calls / seconds, 2),
        "frames_received_per_call_s_median": round(statistics.median(received) / seconds, 1),
        "frames_received_per_call_s_min": round(min(received) / seconds, 1),
        "profile": profile,
    }


@contextlib.contextmanager
def server_of(root: Path | None) -> Iterator[server_process.ServerProcess]:
    """A running server of the checkout at `root` (its media/ too; None: this one)."""
    if root is not None:
        server_process.ROOT = root
    try:
        with server_process.running_server() as server:
            yield server
    finally:
        server_process.ROOT = Path(__file__).resolve().parents[2]


def add_ab_arguments(parser: argparse.ArgumentParser, calls: int) -> None:
    """The options every checkout A/B bench of silent calls takes."""
    parser.add_argument("--calls", type=int, default=calls)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--base", help="another checkout to measure first")
    parser.add_argument("--rounds", type=int, default=1, help="alternate base and this")


def alternate(
    base: str | None, rounds: int, run: Callable[[Path | None], dict[str, Any]], key: str, what: str
) -> None:
    """`run` on the `base` checkout (if any) and on this one, alternated `rounds` times;
    prints each result and the median of each side's `key` (`what` names it)."""
    runs: list[tuple[str, Path | None]] = []
    if base:
        runs.append((f"base {base}", Path(base).resolve()))
    runs.append(("this checkout", None))
    values: dict[str, list[float]] = {label: [] for label, _ in runs}
    for _ in range(rounds):
        for label, root in runs:
            try:
                result = run(root)
            except Exception as exc:  # a benchmark reports, it does not fail
                print(f"== {label}: failed: {exc!r}"[:2000])
                continue
            profile = result.pop("profile", None)
            values[label].append(result[key])
            print(f"== {label}: {json.dumps(result)}", flush=True)
            if profile:
                print(profile, flush=True)
    for label, got in values.items():
        if got:
            listed = ", ".join(f"{v:.2f}" for v in got)
            print(f"{label}: {what}, median of {len(got)}: {statistics.median(got):.2f} ({listed})")


def run_one(root: Path | None, calls: int, seconds: float, spy: bool) -> dict[str, Any]:
    with server_of(root) as server:
        return asyncio.run(
            measure(server.url, server.api_key, server.process.pid, calls, seconds, spy)
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_ab_arguments(parser, calls=5)
    parser.add_argument("--py-spy", action="store_true", help="then profile the server")
    args = parser.parse_args()
    alternate(
        args.base,
        args.rounds,
        lambda root: run_one(root, args.calls, args.seconds, args.py_spy),
        "server_core_percent_per_call",
        "server % of a core per silent call",
    )


if __name__ == "__main__":
    main()
