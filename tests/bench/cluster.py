"""What the cluster's routing costs, and how fast a drain acts: two real nodes, a real
redis-server and HAProxy with the shipped config, one real aiortc call.

    .venv/bin/python -m tests.bench.cluster [--requests 50] [--drain 2]

Prints, for the call's timeline (`GET /v1/operator/calls/{id}`, admin key), the latency
p50/p95 asked of the owning node directly, of the other node (forwarded) and of the
balancer (either); the time to join a sideband (to `session.created`) directly and through
the other node; the merged operator listing; then SIGTERM to the owner: how soon a new
call is refused, when the live call is told (`session_server_shutdown`), when the process
exits. It prints; it never fails.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import statistics
import time

import aiohttp

from server.tools.call_client import CallClient
from tests.haproxy_process import running_haproxy
from tests.redis_process import running_redis
from tests.server_process import ServerProcess, running_server
from tests.trust_cluster import ADMIN_KEY, API_KEY, bearer, make_offer, mint, node_env
from tests.ws_client import SdkCall


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def timed_gets(http: aiohttp.ClientSession, url: str, n: int) -> list[float]:
    took = []
    for _ in range(n):
        start = time.perf_counter()
        async with http.get(url, headers=bearer(ADMIN_KEY)) as resp:
            await resp.read()
            assert resp.status == 200, resp.status
        took.append((time.perf_counter() - start) * 1000)
    return took


def line(label: str, took: list[float]) -> None:
    print(f"  {label:<34} p50 {statistics.median(took):6.1f} ms  p95 {pct(took, 0.95):6.1f} ms")


async def sideband_join_ms(base: str, call_id: str, n: int) -> list[float]:
    took = []
    for _ in range(n):
        start = time.perf_counter()
        side = SdkCall(base, API_KEY, call_id=call_id)
        await side.connect(microphone=False)
        took.append((time.perf_counter() - start) * 1000)
        await side.close()
    return took


async def run(a: ServerProcess, b: ServerProcess, lb_url: str, args: argparse.Namespace) -> None:
    call = CallClient(a.url, await mint(a))
    await call.connect()
    await asyncio.sleep(0.5)
    path = f"/v1/operator/calls/{call.call_id}"
    async with aiohttp.ClientSession() as http:
        print(f"timeline of one call, {args.requests} requests each (owner: node A)")
        line("owner directly", await timed_gets(http, a.url + path, args.requests))
        line("other node (forwarded)", await timed_gets(http, b.url + path, args.requests))
        line("HAProxy (either)", await timed_gets(http, lb_url + path, args.requests))
        line("listing via B (both nodes)", await timed_gets(http, b.url + "/v1/operator/calls", 20))
    print("sideband join to session.created, 10 each")
    line("owner directly", await sideband_join_ms(a.url, call.call_id, 10))
    line("other node (relayed)", await sideband_join_ms(b.url, call.call_id, 10))

    print(f"drain of node A (HARK_DRAIN_TIMEOUT_S={args.drain})")
    pc, offer = await make_offer()
    secret = await mint(b)
    start, signalled = time.perf_counter(), time.monotonic()
    a.process.send_signal(signal.SIGTERM)
    async with aiohttp.ClientSession() as http:
        while True:
            async with http.post(
                a.url + "/v1/realtime/calls",
                data=offer,
                headers={**bearer(secret), "Content-Type": "application/sdp"},
            ) as resp:
                body = await resp.text()
                if resp.status == 503 and "server_draining" in body:
                    break
    refused = (time.perf_counter() - start) * 1000
    await pc.close()
    told = await call.wait_for("error", timeout=args.drain + 20)
    told_s = told.at - signalled
    await asyncio.to_thread(a.process.wait, 30)
    exited = time.perf_counter() - start
    print(f"  first refused offer after SIGTERM   {refused:6.1f} ms (503 server_draining)")
    print(f"  live call told ({told.data['error']['code']}) after {told_s:5.2f} s")
    print(f"  process exited (rc {a.process.returncode}) after {exited:5.2f} s")
    await call.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--drain", type=float, default=2.0)
    args = parser.parse_args()
    extra = {"HARK_DRAIN_TIMEOUT_S": str(args.drain), "HARK_IDLE_TIMEOUT": "120"}
    with (
        running_redis() as redis_url,
        running_server(node_env(redis_url, "bench-a", **extra)) as a,
        running_server(node_env(redis_url, "bench-b", **extra)) as b,
        running_haproxy({"hark-a": a.port, "hark-b": b.port}) as lb,
    ):
        asyncio.run(run(a, b, lb.url, args))


if __name__ == "__main__":
    main()
