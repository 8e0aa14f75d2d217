"""Freed heap goes back to the system once the node's last call has ended (glibc's
malloc_trim), once per idle spell, and never while a call is still live.

The calls are a fake list with the manager's `on_call_ended` hook (named so); the trim
is the real one."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from server.calls import memory_release
from server.calls.memory_release import IdleMemoryRelease


class FakeCalls(list):  # type: ignore[type-arg]
    """Live calls as the manager counts them, with its end-of-call hook."""

    def __init__(self) -> None:
        super().__init__()
        self.on_call_ended: list = []  # type: ignore[type-arg]

    def end(self, call: str) -> None:
        self.remove(call)
        for hook in self.on_call_ended:
            hook(call)


async def test_the_heap_is_trimmed_after_the_last_call_only() -> None:
    assert memory_release.MALLOC_TRIM is not None  # glibc here
    calls = FakeCalls()
    calls.extend(["a", "b"])
    release = IdleMemoryRelease(calls, settle_s=0.05)
    calls.end("a")
    await asyncio.sleep(0.2)
    assert release.trims == 0  # one call is still live
    calls.end("b")
    await asyncio.sleep(0.3)
    assert release.trims == 1
    calls.append("c")  # a call arrives during the pause: no trim under it
    calls.end("c")
    calls.append("d")
    await asyncio.sleep(0.3)
    assert release.trims == 1
    calls.end("d")
    await asyncio.sleep(0.3)
    assert release.trims == 2


def rss_mb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def test_trim_now_returns_a_fragmented_heap_to_the_system() -> None:
    """200 MB of 2 kB blocks freed but for one in 500: glibc keeps the pages; a trim
    returns them."""
    blocks = [bytes(2000) for _ in range(100_000)]
    pinned = blocks[::500]  # noqa: F841 - they keep the freed space fragmented
    del blocks
    held = rss_mb()
    assert memory_release.trim_now()
    assert held - rss_mb() > 100
