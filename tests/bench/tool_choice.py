"""Tool calling on the embedded model: how often `auto` picks right, and the round trip.

    .venv/bin/python -m tests.bench.tool_choice [--skip-round-trip] [--turns 10]

1. Decision accuracy: every utterance of tests/bench/tool_choice_set.json (each labelled
   with the tool to call or `answer`) goes through the embedded llama.cpp engine with
   `tool_choice: auto` and the set's tools; the engine's choice is compared with the
   label. The `tuning` set is the one the decision prompt was chosen on; `held_out` was
   written before the method was measured on it. For the utterances that need a tool,
   that tool's arguments are then written (`tool_choice` naming it) and checked against
   its JSON Schema.
2. Round trip over real WebRTC (a server started here, `--turns` fresh calls): a spoken
   weather question with `tool_choice: required` → `response.function_call_arguments.done`,
   timed from the last voiced sample the client sent; p50/p95.

It prints JSON and never fails on a number.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import jsonschema_rs
import numpy as np

from server.config import Config
from server.engines.chat import ChatMessage, LLMRequest, ToolCallDelta, ToolChoice
from server.engines.llama_cpp_llm import LlamaCppLLM
from server.protocol.tools import parse_tools
from server.tools.call_client import CallClient, CallError, mint_client_secret
from tests.bench.voice_to_voice import percentile
from tests.speech import silence, speak

SET = Path(__file__).with_name("tool_choice_set.json")
WEATHER_QUESTIONS = [
    "What's the weather like in Paris?",
    "Is it raining in London right now?",
    "How warm is it in Madrid today?",
    "What's the temperature in Berlin?",
    "Is it sunny in Rome?",
]


async def collect(llm: LlamaCppLLM, request: LLMRequest) -> tuple[str, str]:
    """(the tool called or "answer", its arguments)."""
    name, arguments = "answer", ""
    async for part in llm.stream(request):
        if isinstance(part, ToolCallDelta):
            name = part.name or name
            arguments += part.arguments
    return name, arguments


async def accuracy() -> dict[str, Any]:
    cache = Path(os.environ.get("HARK_CACHE_DIR") or Config().cache_dir)
    llm = LlamaCppLLM(cache_dir=cache, threads=Config().llm_threads)
    await llm.load()
    report: dict[str, Any] = {}
    for label, data in json.loads(SET.read_text())["sets"].items():
        tools = parse_tools(data["tools"], "tools")
        rows, times, valid, needing = [], [], 0, 0
        for utterance, wanted in data["cases"]:
            history = (ChatMessage("user", utterance),)
            started = time.perf_counter()
            got, _ = await collect(llm, LLMRequest("", history, tools))
            times.append((time.perf_counter() - started) * 1000)
            rows.append({"utterance": utterance, "wanted": wanted, "got": got})
            if wanted != "answer":
                needing += 1
                named = LLMRequest("", history, tools, ToolChoice.function(wanted))
                _, arguments = await collect(llm, named)
                tool = next(t for t in tools if t.name == wanted)
                try:
                    jsonschema_rs.validate(tool.parameters, json.loads(arguments))
                    valid += 1
                except (ValueError, jsonschema_rs.ValidationError):
                    pass
                rows[-1]["arguments"] = arguments
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
        right = sum(r["wanted"] == r["got"] for r in rows)
        tool_rows = [r for r in rows if r["wanted"] != "answer"]
        report[label] = {
            "correct": right,
            "total": len(rows),
            "accuracy": round(right / len(rows), 3),
            "tool_needed_and_called": sum(r["got"] == r["wanted"] for r in tool_rows),
            "tool_needed": len(tool_rows),
            "answered_when_no_tool_needed": sum(
                r["got"] == "answer" for r in rows if r["wanted"] == "answer"
            ),
            "no_tool_needed": len(rows) - len(tool_rows),
            "schema_valid_arguments": f"{valid}/{needing}",
            "decision_and_reply_ms_p50": percentile(times, 50),
            "misses": [r for r in rows if r["wanted"] != r["got"]],
        }
    return report


WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Get the current weather for a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


async def round_trip(url: str, api_key: str, turns: int) -> dict[str, Any]:
    questions = [WEATHER_QUESTIONS[i % len(WEATHER_QUESTIONS)] for i in range(turns)]
    audio = {
        q: np.concatenate([silence(300, 48000), speak(q, 48000), silence(1200, 48000)])
        for q in set(questions)
    }
    session = {"tools": [WEATHER], "tool_choice": "required"}
    results: list[dict[str, Any]] = []
    for question in questions:
        client = CallClient(url, await mint_client_secret(url, api_key, session))
        try:
            await client.connect()
            await client.finish_saying()
            mark = len(client.events)
            speech_end = await client.say(audio[question], 48000)
            done = await client.wait_for(
                "response.function_call_arguments.done", after=mark, timeout=90
            )
            results.append(
                {
                    "question": question,
                    "arguments": done.data["arguments"],
                    "round_trip_ms": round((done.at - speech_end) * 1000, 1),
                }
            )
        except CallError as exc:
            results.append({"question": question, "error": str(exc)})
        finally:
            await client.hangup()
        print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    values = [r["round_trip_ms"] for r in results if "round_trip_ms" in r]
    return {
        "turns": results,
        "speech_end_to_arguments_done_ms": {
            "p50": percentile(values, 50),
            "p95": percentile(values, 95),
            "n": len(values),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--skip-round-trip", action="store_true")
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument("--url")
    parser.add_argument("--api-key", default="")
    args = parser.parse_args()
    report: dict[str, Any] = {}
    if not args.skip_accuracy:
        report["auto_decision"] = asyncio.run(accuracy())
    if not args.skip_round_trip:
        if args.url:
            report["round_trip"] = asyncio.run(round_trip(args.url, args.api_key, args.turns))
        else:
            from tests.server_process import running_server

            with running_server() as server:
                report["round_trip"] = asyncio.run(
                    round_trip(server.url, server.api_key, args.turns)
                )
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
