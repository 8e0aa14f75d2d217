"""Embedded LLM under concurrent calls: first-token latency with 1 slot and with more.

    PYTHONPATH=$PWD .venv/bin/python -m tests.bench.llm_fairness [--calls 3] [--slots 1,3]
        [--rounds 5] [--gap-ms 150]

Each round starts `--calls` replies `--gap-ms` apart (each a different question with the
default persona, as callers asking at once) and reads each as a voice call would: the
first clause is "spoken" (the reader pauses ~1 s once it has it, as the reply pipeline
waits for the first audio), the rest is read as it comes. Printed per slot count: the
first-token latency of the first reply and of the later ones (p50/p95 over rounds) and
the time to the last token. Both engines are loaded in one process and alternate round
by round, so other load on the machine falls on both. Prints JSON; never fails on a number.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from pathlib import Path

from server.config import Config
from server.engines.chat import ChatMessage, LLMRequest
from server.engines.llama_cpp_llm import LlamaCppLLM

QUESTIONS = [
    "Tell me about the ocean.",
    "What is the capital of France?",
    "Why is the sky blue?",
    "How do bees make honey?",
    "What should I cook tonight?",
    "Tell me a short story about a dragon.",
]
SPEAK_FIRST_CLAUSE_S = 1.0


async def one_reply(llm: LlamaCppLLM, question: str, start: float) -> dict[str, float]:
    request = LLMRequest(Config.default_instructions, (ChatMessage("user", question),))
    first = None
    paused = False
    text = ""
    async for delta in llm.stream(request):
        if first is None:
            first = time.perf_counter() - start
        text += delta
        if not paused and any(mark in text for mark in ".,!?"):
            paused = True
            await asyncio.sleep(SPEAK_FIRST_CLAUSE_S)  # the first clause being spoken
    return {"first_ms": (first or 0.0) * 1000, "last_ms": (time.perf_counter() - start) * 1000}


async def round_of(llm: LlamaCppLLM, calls: int, gap_s: float, offset: int) -> list[dict]:
    async def later(i: int) -> dict[str, float]:
        await asyncio.sleep(i * gap_s)
        question = QUESTIONS[(offset + i) % len(QUESTIONS)]
        return await one_reply(llm, question, time.perf_counter())

    return list(await asyncio.gather(*(later(i) for i in range(calls))))


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))])


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3)
    parser.add_argument("--slots", default="1,3")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--gap-ms", type=float, default=150)
    parser.add_argument("--threads", type=int, default=Config().llm_threads)
    args = parser.parse_args()
    cache = Path(os.environ.get("HARK_CACHE_DIR") or Config().cache_dir)
    engines = {}
    for count in (int(s) for s in args.slots.split(",")):
        engine = LlamaCppLLM(
            cache, args.threads, warmup_instructions=Config.default_instructions, slots=count
        )
        await engine.load()
        engines[count] = engine
    results: dict[int, list[list[dict]]] = {count: [] for count in engines}
    for r in range(args.rounds):
        for count, engine in engines.items():
            results[count].append(await round_of(engine, args.calls, args.gap_ms / 1000, r))
    summary = {}
    for count, rounds in results.items():
        firsts = [rnd[0]["first_ms"] for rnd in rounds]
        later = [call["first_ms"] for rnd in rounds for call in rnd[1:]]
        last = [call["last_ms"] for rnd in rounds for call in rnd]
        summary[f"slots={count}"] = {
            "first_reply_first_token_ms_p50": pct(firsts, 50),
            "later_replies_first_token_ms_p50": pct(later, 50) if later else None,
            "later_replies_first_token_ms_p95": pct(later, 95) if later else None,
            "all_replies_last_token_ms_p50": round(statistics.median(last)),
        }
    print(
        json.dumps(
            {"calls": args.calls, "rounds": args.rounds, "threads": args.threads, **summary},
            indent=2,
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
