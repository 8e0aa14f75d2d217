"""A node of 1 worker against a node of N: start-up, memory per process, silent calls.

    .venv/bin/python -m tests.bench.workers_load [--workers 1,2] [--calls 12] [--seconds 15]

For each worker count, starts the server as a user does (`python -m server serve`,
HARK_WORKERS=N, real models) and prints: the time until `/healthz` answers 200, the RSS of
the front and of each worker (the engines are loaded per worker), then with `--calls`
silent WebRTC calls through the public port, each process's share of a core over
`--seconds` (is every core used?) and the frames each call received per second (50 is
every frame). It prints; it never fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path
from typing import Any

from media import outbound
from server.tools.call_client import CallClient, mint_client_secret
from tests import server_process
from tests.bench.silent_calls import cpu_seconds


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


async def processes(url: str, front_pid: int) -> dict[str, int]:
    """name → pid: the server (one worker), or the front and its workers."""
    import aiohttp

    async with aiohttp.ClientSession() as http:
        async with http.get(f"{url}/healthz") as resp:
            body = await resp.json()
    workers = body.get("workers")
    if not workers:
        return {"server": front_pid}
    return {"front": front_pid, **{f"worker {w['index']}": int(w["pid"]) for w in workers}}


async def load(
    url: str, api_key: str, pids: dict[str, int], calls: int, seconds: float
) -> dict[str, Any]:
    clients = []
    for _ in range(calls):
        client = CallClient(url, await mint_client_secret(url, api_key, {}))
        client.mic.silence_packet = outbound.opus_silence_packet()  # cheap clients
        await client.connect()
        clients.append(client)
    await asyncio.sleep(3)  # past ICE, DTLS and the first frames
    before = [len(c.recorder.chunks) for c in clients]
    start = {name: cpu_seconds(pid) for name, pid in pids.items()}
    mine = time.process_time()
    await asyncio.sleep(seconds)
    busy = {
        name: round(100 * (cpu_seconds(pid) - start[name]) / seconds, 1)
        for name, pid in pids.items()
    }
    mine = time.process_time() - mine
    received = [
        (len(c.recorder.chunks) - n) / seconds for c, n in zip(clients, before, strict=True)
    ]
    placed: dict[str, int] = {}
    for client in clients:
        tag = client.call_id.split("_")[1] if client.call_id.count("_") > 1 else "single"
        placed[tag] = placed.get(tag, 0) + 1
    loaded_rss = {name: rss_mb(pid) for name, pid in pids.items()}
    for client in clients:
        await client.hangup()
    return {
        "rss_mb_with_calls": loaded_rss,
        "calls": calls,
        "calls_per_worker": placed,
        "core_percent_per_process": busy,
        "core_percent_server_total": round(sum(busy.values()), 1),
        "clients_core_percent": round(100 * mine / seconds, 1),
        "frames_per_call_s_median": round(statistics.median(received), 1),
        "frames_per_call_s_min": round(min(received), 1),
    }


def run(workers: int, calls: int, seconds: float) -> dict[str, Any]:
    started = time.monotonic()
    with server_process.running_server(
        {"HARK_WORKERS": str(workers), "HARK_MAX_CALLS": "200"}
    ) as server:
        ready_s = round(time.monotonic() - started, 1)
        pids = asyncio.run(processes(server.url, server.process.pid))
        idle_rss = {name: rss_mb(pid) for name, pid in pids.items()}
        result = (
            asyncio.run(load(server.url, server.api_key, pids, calls, seconds)) if calls else {}
        )
        return {"workers": workers, "ready_s": ready_s, "rss_mb_idle": idle_rss, **result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", default="1,2", help="worker counts to compare")
    parser.add_argument("--calls", type=int, default=12)
    parser.add_argument("--seconds", type=float, default=15)
    args = parser.parse_args()
    for count in (int(n) for n in args.workers.split(",")):
        print(json.dumps(run(count, args.calls, args.seconds)), flush=True)


if __name__ == "__main__":
    main()
