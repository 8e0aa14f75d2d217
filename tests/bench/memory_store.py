"""Benchmark of the durable store: what storing a conversation costs a call, and how fast
the history reads are.

    .venv/bin/python -m tests.bench.memory_store [--calls 50] [--turns 40]
        [--backends sqlite,postgresql]

Writes: `--calls` concurrent calls each finish `--turns` turns (a user transcript and a
reply as heard each, the session's own `HistoryLog.item_done`), a turn every 100 ms per
call (far denser than speech). Printed per backend: the event loop's time per turn (what
a call pays, p50/p95 µs), the time until a turn is committed (p50/p95 ms), and the event
loop's stalls over 20 ms while it all runs (a 5 ms ticker measures its lateness).

Reads, with 1,000 conversations × 20 items in the store: the first page of the list, a
page deep in it (a cursor), a conversation, and its 20 items (p50/p95 ms). Prints JSON;
never fails on a number.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from server.protocol.conversation import new_id
from server.store.conversations import ConversationStore, upsert_item_statement
from server.store.database import Database, PostgresDatabase, SqliteDatabase
from server.store.memory import HistoryLog
from server.store.schema import migrate
from server.store.writer import HistoryWriter

STALL_MS = 20.0


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3) if ordered else 0.0


def message(role: str, text: str) -> dict[str, Any]:
    kind = "input_audio" if role == "user" else "output_audio"
    return {
        "id": new_id("item"),
        "type": "message",
        "object": "realtime.item",
        "status": "completed",
        "role": role,
        "content": [{"type": kind, "transcript": text}],
    }


class StallMeter:
    """How late a 5 ms sleep wakes up: the event loop's stalls."""

    def __init__(self) -> None:
        self.late_ms: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            start = time.perf_counter()
            await asyncio.sleep(0.005)
            self.late_ms.append((time.perf_counter() - start - 0.005) * 1000)

    def __enter__(self) -> StallMeter:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()


async def bench_writes(db: Database, calls: int, turns: int) -> dict[str, Any]:
    store = ConversationStore(db)
    writer = HistoryWriter(db)
    writer.start()
    on_loop_us: list[float] = []
    durable_ms: list[float] = []

    async def call(n: int) -> None:
        conv = await store.create("key:bench")
        await store.call_started(f"rtc_{n}", conv.id, "key:bench")
        log = HistoryLog(writer, conv.id, f"rtc_{n}")
        for turn in range(turns):
            await asyncio.sleep(0.1)
            user = message("user", f"Question number {turn} about something interesting?")
            reply = message("assistant", "A reply of two sentences, as heard. " * 2)
            started = time.perf_counter()
            log.item_done(user)
            log.item_done(reply)
            on_loop_us.append((time.perf_counter() - started) * 1e6)
            await writer.flush()
            durable_ms.append((time.perf_counter() - started) * 1000)
        log.close("hangup")

    with StallMeter() as meter:
        began = time.perf_counter()
        await asyncio.gather(*(call(n) for n in range(calls)))
        seconds = time.perf_counter() - began
    await writer.close()
    return {
        "turns": len(durable_ms),
        "turns_per_s": round(len(durable_ms) / seconds, 1),
        "on_loop_us_per_turn": {"p50": pct(on_loop_us, 0.5), "p95": pct(on_loop_us, 0.95)},
        "committed_ms_per_turn": {"p50": pct(durable_ms, 0.5), "p95": pct(durable_ms, 0.95)},
        "batches": len(writer.batch_seconds),
        "batch_commit_ms": {
            "p50": pct([s * 1000 for s in writer.batch_seconds], 0.5),
            "p95": pct([s * 1000 for s in writer.batch_seconds], 0.95),
        },
        "loop_stalls_over_20ms": sum(1 for late in meter.late_ms if late > STALL_MS),
        "loop_lateness_ms_max": round(max(meter.late_ms, default=0.0), 2),
        "dropped": writer.dropped,
    }


async def seed(db: Database, conversations: int, items: int) -> list[str]:
    store = ConversationStore(db)
    ids = []
    now = time.time() - conversations
    for _ in range(conversations):
        conv = await store.create("key:bench")
        ids.append(conv.id)
        await db.transaction(
            [
                upsert_item_statement(
                    conv.id, message("user" if i % 2 == 0 else "assistant", f"turn {i}"), None, now
                )
                for i in range(items)
            ]
        )
    return ids


async def bench_reads(db: Database, reps: int) -> dict[str, Any]:
    ids = await seed(db, 1000, 20)
    store = ConversationStore(db)
    deep = (await store.list("key:bench", limit=100)).data[-1].id
    timings: dict[str, list[float]] = {"list": [], "list_after": [], "get": [], "items": []}
    for rep in range(reps):
        conv = ids[(rep * 37) % len(ids)]
        for name, read in (
            ("list", lambda: store.list("key:bench", limit=20)),
            ("list_after", lambda: store.list("key:bench", limit=20, after=deep)),
            ("get", lambda c=conv: store.get("key:bench", c)),
            ("items", lambda c=conv: store.items("key:bench", c, limit=20)),
        ):
            started = time.perf_counter()
            await read()
            timings[name].append((time.perf_counter() - started) * 1000)
    return {
        "conversations": len(ids),
        "items_each": 20,
        **{k: {"p50_ms": pct(v, 0.5), "p95_ms": pct(v, 0.95)} for k, v in timings.items()},
    }


async def run_backend(name: str, args: argparse.Namespace, url: str | None) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="hark-bench-") as folder:
        for phase in ("writes", "reads"):
            if name == "sqlite":
                db: Database = await SqliteDatabase.open(Path(folder) / f"{phase}.db")
            else:
                import asyncpg

                assert url is not None
                admin = await asyncpg.connect(url)
                await admin.execute(f"CREATE DATABASE bench_{phase}")
                await admin.close()
                db = await PostgresDatabase.open(url.rsplit("/", 1)[0] + f"/bench_{phase}")
            await migrate(db)
            try:
                if phase == "writes":
                    results[phase] = await bench_writes(db, args.calls, args.turns)
                else:
                    results[phase] = await bench_reads(db, args.reps)
            finally:
                await db.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--turns", type=int, default=40)
    parser.add_argument("--reps", type=int, default=200)
    parser.add_argument("--backends", default="sqlite,postgresql")
    args = parser.parse_args()
    report: dict[str, Any] = {"calls": args.calls, "turns_per_call": args.turns}
    for backend in args.backends.split(","):
        print(f"[bench] {backend}…", flush=True)
        if backend == "postgresql":
            from tests.postgres_process import running_postgres

            with running_postgres() as url:
                report[backend] = asyncio.run(run_backend(backend, args, url))
        else:
            report[backend] = asyncio.run(run_backend(backend, args, None))
        print(json.dumps(report[backend], indent=2), flush=True)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
