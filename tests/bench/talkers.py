"""Talking calls against a running server: each asks spoken questions, each timed.

Part 3 of tests/bench/capacity.py: `count` calls at once, their starts staggered by
0.7 s, each asking its questions one after the other (tests/bench/voice_to_voice.py's
`one_turn`); voice-to-voice p50/p95, each stage's median from the server's breakdown,
and the slowest tenth of the turns stage by stage. The talkers share the bench's own
loop unless `procs` says otherwise: spread over one process each (as callers on devices
of their own) they cost the 2-core box more (29 vs 25 % of a core for six) and answered
later (p95 2.0-2.1 s against 1.3-1.4 s in alternated runs on main, load 2), so that is an
option, not the default. `mic_skipped_frames` says when a talker's loop ran so late that
its microphone skipped utterance audio.
"""

from __future__ import annotations

import asyncio
import functools
import multiprocessing
import time
from multiprocessing.connection import Connection
from typing import Any

from media.outbound import opus_silence_packet
from server.tools.call_client import CallClient, CallError, mint_client_secret
from server.workers.routing import owner_of
from tests.bench.voice_to_voice import BREAKDOWN, QUESTIONS, one_turn, percentile, utterance

Plan = tuple[int, list[str]]  # a talker's index and its questions


def talkers(
    url: str, api_key: str, count: int, questions: int = 3, procs: int = 0
) -> dict[str, Any]:
    """`count` calls at once, starts staggered, each asking `questions` spoken questions;
    with the server's breakdown (stage medians, and the slowest turns in full: where a
    p95 turn lost its time). The talkers run in this process's loop (`procs` 0) or in
    `procs` processes of their own."""
    asked = [
        QUESTIONS[(i * questions + q) % len(QUESTIONS)]
        for i in range(count)
        for q in range(questions)
    ]
    plan = [(i, asked[i * questions : (i + 1) * questions]) for i in range(count)]
    procs = min(procs, count)
    if procs == 0:
        for _, questions_of in plan:
            for question in questions_of:
                spoken(question)  # Piper blocks: not on the talkers' loop
        cpu = time.process_time()
        start = time.monotonic()
        replies = [asyncio.run(talk(url, api_key, plan, start))]
        cpu_s = time.process_time() - cpu
    else:
        context = multiprocessing.get_context("spawn")
        conns, children = [], []
        for share in range(procs):
            mine, theirs = context.Pipe()
            mine_plan = plan[share::procs]
            child = context.Process(target=talker_process, args=(theirs, url, api_key, mine_plan))
            child.start()
            conns.append(mine)
            children.append(child)
        for conn in conns:
            conn.recv()  # ready: imported, its questions synthesized
        start = time.monotonic() + 0.5
        for conn in conns:
            conn.send(start)
        replies = [conn.recv() for conn in conns]
        for child in children:
            child.join(10)
        cpu_s = sum(reply["cpu_s"] for reply in replies)
    elapsed = time.monotonic() - start
    turns = [turn for reply in replies for turn in reply["turns"]]
    owners = [owner for reply in replies for owner in reply["owners"]]
    values = [turn["voice_to_voice_ms"] for turn in turns]
    slowest = sorted(turns, key=lambda t: -t["voice_to_voice_ms"])[: max(1, len(turns) // 10)]
    return {
        "talkers": count,
        "talker_processes": procs,
        "turns": len(values),
        "voice_to_voice_ms_p50": percentile(values, 50),
        "voice_to_voice_ms_p95": percentile(values, 95),
        "voice_to_voice_ms": sorted(round(v) for v in values),  # to pool runs
        "calls_per_worker": {str(w): owners.count(w) for w in sorted(set(owners), key=str)},
        "clients_core_percent": round(100 * cpu_s / elapsed, 1),
        # Utterance audio the talkers' microphones skipped because their loop ran late.
        "mic_skipped_frames": sum(turn["mic_skipped_frames"] for turn in turns),
        "stage_ms_p50": {key: stage(turns, key, 50) for key in (*BREAKDOWN, "transport_ms")},
        # A reply's longest silence (Piper's own pauses, or audio not ready in time).
        "longest_pause_ms_p50_p95_max": [
            stage(turns, "longest_pause_ms", pct) for pct in (50, 95, 100)
        ],
        "slowest": [
            {key: turn.get(key) for key in SLOW_KEYS if turn.get(key) is not None}
            for turn in slowest
        ],
    }


def talker_process(conn: Connection, url: str, api_key: str, plan: list[Plan]) -> None:
    for _, questions in plan:
        for question in questions:
            spoken(question)
    conn.send("ready")
    start: float = conn.recv()
    cpu = time.process_time()
    reply = asyncio.run(talk(url, api_key, plan, start))
    conn.send({**reply, "cpu_s": time.process_time() - cpu})


@functools.cache
def spoken(question: str) -> Any:
    return utterance(question)


async def talk(url: str, api_key: str, plan: list[Plan], start: float) -> dict[str, Any]:
    """The talkers of `plan` on this loop, talker i starting 0.7 i s after `start`."""
    owners: list[int | None] = []  # the worker each call went to (its id says)

    async def talker(index: int, questions: list[str]) -> list[dict[str, Any]]:
        await asyncio.sleep(max(0.0, start + 0.7 * index - time.monotonic()))
        results: list[dict[str, Any]] = []
        for _ in range(10):  # a full node says 503 and Retry-After: a caller tries again
            client = CallClient(url, await mint_client_secret(url, api_key, {}))
            client.mic.silence_packet = opus_silence_packet()  # idle frames not encoded
            try:
                await client.connect()
                break
            except CallError as exc:
                await client.close()
                if "(503)" not in str(exc):
                    print(f"talker {index}: {exc}")
                    return results
                await asyncio.sleep(5)
        else:
            print(f"talker {index}: refused 10 times")
            return results
        owner = owner_of(client.call_id)
        owners.append(owner)
        try:
            await client.finish_saying()
            for question in questions:
                skipped = client.mic.skipped_late_frames
                turn = await one_turn(client, question, spoken(question))
                turn["mic_skipped_frames"] = client.mic.skipped_late_frames - skipped
                if turn["voice_to_voice_ms"] is not None:
                    results.append({"talker": index, "worker": owner, **turn})
        except CallError as exc:
            print(f"talker {index}: {exc}")
        finally:
            await client.hangup()
        return results

    per_talker = await asyncio.gather(*(talker(i, qs) for i, qs in plan))
    return {"turns": [turn for turns in per_talker for turn in turns], "owners": owners}


SLOW_KEYS = (
    "talker",
    "worker",
    "heard_as",
    "voice_to_voice_ms",
    *BREAKDOWN,
    "transport_ms",
    "speculative",
    "mic_skipped_frames",
)


def stage(turns: list[dict[str, Any]], key: str, pct: float) -> float | None:
    return percentile([t[key] for t in turns if isinstance(t.get(key), int | float)], pct)
