"""Leak check on a real node: 200 create/hang-up cycles and 200 calls whose client
vanishes leave the server with the same tasks, peer connections and fds, and bounded RSS.

Vanishing clients: 100 close their peer connection without hanging up, 100 live in a
process that is SIGKILLed (no DTLS close, no SCTP abort), and every one of them sends no
audio; node A's 3 s idle and ICE timeouts must clean up after all of them.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

import pytest
from aiortc import RTCSessionDescription

from tests.server_process import ROOT
from tests.trust_cluster import API_KEY, diagnostics, hang_up, make_offer, open_call

pytestmark = pytest.mark.slow

CYCLES = 200
VANISHING = 200
BATCH = 10
MAX_TASK_GROWTH = 5
MAX_PC_GROWTH = 2
MAX_FD_GROWTH = 10
MAX_RSS_GROWTH_MB = 150


async def connect(node) -> tuple[object, str]:
    pc, offer = await make_offer()
    status, headers, answer = await open_call(node, API_KEY, offer)
    assert status == 201, answer
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    for _ in range(150):
        if pc.connectionState == "connected":
            break
        await asyncio.sleep(0.1)
    return pc, headers["Location"]


async def cycle(node) -> bool:
    pc, location = await connect(node)
    connected = pc.connectionState == "connected"
    await hang_up(node, location)
    await pc.close()
    return connected


async def vanish(node) -> bool:
    pc, _ = await connect(node)
    connected = pc.connectionState == "connected"
    await pc.close()  # no DELETE
    return connected


async def settled(node, timeout: float = 30) -> dict:
    """Counters once no call is live and the task count has stopped moving."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        now = await diagnostics(node)
        if now["calls"] == 0 and last is not None and now["tasks"] == last["tasks"]:
            return now
        if time.monotonic() > deadline:
            raise AssertionError(f"calls never drained: {now}")
        last = now
        await asyncio.sleep(1.0)


async def back_to(node, before: dict, timeout: float) -> tuple[dict, float]:
    """Counters once tasks and peer connections are back within bounds (or at timeout)."""
    started = time.monotonic()
    while True:
        now = await diagnostics(node)
        within = (
            now["calls"] == 0
            and now["tasks"] - before["tasks"] <= MAX_TASK_GROWTH
            and now["peer_connections"] - before["peer_connections"] <= MAX_PC_GROWTH
        )
        if within or time.monotonic() - started > timeout:
            return now, time.monotonic() - started
        await asyncio.sleep(1.0)


async def batches(count: int, run, node) -> int:
    done = 0
    for start in range(0, count, BATCH):
        results = await asyncio.gather(*(run(node) for _ in range(min(BATCH, count - start))))
        done += sum(results)
    return done


async def test_no_leaks_after_hangups_and_vanished_clients(hark_cluster):
    node = hark_cluster.a
    await batches(BATCH, cycle, node)  # warm up lazily created state
    before = await settled(node)
    started = time.monotonic()

    connected = await batches(CYCLES, cycle, node)
    after_cycles = await settled(node)
    cycles_s = time.monotonic() - started

    started = time.monotonic()
    closed = await batches(VANISHING // 2, vanish, node)
    after_closed = await settled(node)
    killed_process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "tests.vanishing_clients", node.url, API_KEY),
        str(VANISHING // 2),
        cwd=ROOT,
        stdout=subprocess.PIPE,
    )
    try:
        assert killed_process.stdout is not None
        line = (await asyncio.wait_for(killed_process.stdout.readline(), 180)).decode()
    finally:
        killed_process.kill()  # SIGKILL: no hang-up, no DTLS close, no SCTP abort
        await killed_process.wait()
    killed = int(line.split()[1]) if line.startswith("connected") else 0
    killed_outcomes = line.split(" ", 2)[-1].strip()
    await settled(node, timeout=60)
    vanish_s = time.monotonic() - started
    # A vanished peer's transports may take a few more seconds to wind down after its
    # call has ended (aiortc's DTLS/SCTP teardown): wait, bounded, and report how long.
    after_vanishing, drain_s = await back_to(node, before, timeout=60)

    figures = {
        "before": before,
        "after_200_hangups": after_cycles,
        "after_100_closed": after_closed,
        "after_200_vanished": after_vanishing,
        "connected": {"hangup_cycles": connected, "closed": closed, "killed": killed},
        "killed_outcomes": killed_outcomes,
        "seconds": {
            "hangup_cycles": round(cycles_s, 1),
            "vanishing": round(vanish_s, 1),
            "drain_after_vanishing": round(drain_s, 1),
        },
    }
    print("leak check:", json.dumps(figures))

    assert connected >= CYCLES * 0.9 and closed + killed >= VANISHING * 0.9, figures
    for after in (after_cycles, after_closed, after_vanishing):
        assert after["tasks"] - before["tasks"] <= MAX_TASK_GROWTH, figures
        assert after["peer_connections"] - before["peer_connections"] <= MAX_PC_GROWTH, figures
        assert after["open_fds"] - before["open_fds"] <= MAX_FD_GROWTH, figures
        assert (after["rss_kb"] - before["rss_kb"]) / 1024 <= MAX_RSS_GROWTH_MB, figures
        assert after["registered_calls"] == 0, figures
