"""F5-TTS speed at real size: first-audio latency and real-time factor for 1-5 calls.

    .venv/bin/python -m tests.bench.f5_speed [--calls 1,2,3,4,5] [--nfe 32]
        [--device auto] [--max-batch 0] [--threads N]

F5TTS_v1_Base (336 M parameters) and Vocos mel-24kHz with random weights: the compute of
a forward pass does not depend on the weights, so the timings are the real model's on
this hardware (the audio is noise). Each call speaks a reply as Hark's reply side sends
it: a short first clause, then the rest joined, through the engine's one shared worker
(round robin, batches across calls), all calls starting together. Per call count it
prints, as JSON: first-audio latency (request to first chunk, p50/max), each call's
real-time factor (time to its last chunk / seconds of audio) and the worker's throughput
(seconds of audio per second). It prints; it never fails on a number.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import Any

import torch

from server.engines.f5.synthesis import F5Options
from server.engines.f5_tts import F5TTS
from tests.f5_models import base_size_modules

FIRST = "Paris is the capital"
REST = "of France, and it sits on the river Seine in the north of the country."


async def one_call(engine: F5TTS, key: str) -> dict[str, float]:
    started = time.perf_counter()
    first_audio = None
    samples = 0
    for text in (FIRST, REST):
        async for pcm in engine.synthesize(text, call_key=key):
            if first_audio is None:
                first_audio = time.perf_counter() - started
            samples += len(pcm)
    total = time.perf_counter() - started
    audio_s = samples / engine.sample_rate
    assert first_audio is not None
    return {"first_audio_s": first_audio, "total_s": total, "audio_s": audio_s}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.threads:
        torch.set_num_threads(args.threads)
    built = time.perf_counter()
    engine = F5TTS(
        F5Options(nfe_steps=args.nfe),
        device=args.device,
        max_batch=args.max_batch,
        prebuilt=base_size_modules(),
    )
    await engine.load()
    report: dict[str, Any] = {
        "model": "F5TTS_v1_Base + Vocos mel-24kHz, random weights",
        "device": str(engine._synth.device if engine._synth else "?"),
        "torch_threads": torch.get_num_threads(),
        "nfe_steps": args.nfe,
        "max_batch": engine.max_batch,
        "load_and_warm_up_s": round(time.perf_counter() - built, 1),
        "runs": [],
    }
    print(json.dumps({k: v for k, v in report.items() if k != "runs"}), flush=True)
    for calls in args.calls:
        started = time.perf_counter()
        results = await asyncio.gather(*(one_call(engine, f"call-{i}") for i in range(calls)))
        wall = time.perf_counter() - started
        firsts = [r["first_audio_s"] for r in results]
        row = {
            "calls": calls,
            "first_audio_s_p50": round(statistics.median(firsts), 2),
            "first_audio_s_max": round(max(firsts), 2),
            "rtf_per_call_p50": round(
                statistics.median(r["total_s"] / r["audio_s"] for r in results), 2
            ),
            "audio_s_per_call": round(statistics.median(r["audio_s"] for r in results), 2),
            "throughput_audio_s_per_s": round(sum(r["audio_s"] for r in results) / wall, 3),
            "wall_s": round(wall, 1),
        }
        report["runs"].append(row)
        print(json.dumps(row), flush=True)
    engine.close()
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", default="1,2,3,4,5", help="comma-separated call counts")
    parser.add_argument("--nfe", type=int, default=32, help="flow-matching steps")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--max-batch", type=int, default=0, help="0: the engine default")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: its own)")
    args = parser.parse_args()
    args.calls = [int(c) for c in args.calls.split(",") if c]
    report = asyncio.run(run(args))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
