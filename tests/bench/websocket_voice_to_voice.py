"""Voice-to-voice over the WebSocket (OpenAI's Python SDK) beside WebRTC, in one run.

    .venv/bin/python -m tests.bench.websocket_voice_to_voice [--turns 20] [--url URL --api-key KEY]

Starts its own server on the embedded defaults unless --url is given. Each question is
asked twice, on fresh calls: once over a WebSocket (the SDK's `client.realtime.connect()`,
a microphone appending 100 ms chunks at real-time pace, each once its 100 ms have passed)
and once over WebRTC (the `call` client, as tests/bench/voice_to_voice.py does); the two
alternate, and so does which goes first, so other load on the machine falls on both.

WebSocket voice-to-voice: the last voiced chunk appended → the first
`response.output_audio.delta` of the reply received. WebRTC: the last voiced sample sent →
the first audible reply frame received (Opus and the receive buffer included). The
server's `hark.metrics` breakdown is printed for both. It measures and prints; it never
fails on a number.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any

import numpy as np

from server.tools.call_client import CallClient, CallError, mint_client_secret
from tests.bench.voice_to_voice import BREAKDOWN, QUESTIONS, one_turn, percentile, utterance
from tests.speech import silence, speak
from tests.ws_client import SdkCall


def ws_utterance(question: str) -> np.ndarray:
    return np.concatenate([silence(300, 24000), speak(question, 24000)])


async def ws_turn(url: str, api_key: str, question: str, pcm: np.ndarray) -> dict[str, Any]:
    call = SdkCall(url, await mint_client_secret(url, api_key))
    await call.connect()
    try:
        await asyncio.sleep(0.5)  # the microphone is live, as a real one would be
        mark = len(call.events)
        last_voiced = await call.say(pcm)
        done = await call.wait_for("response.done", after=mark, timeout=90)
        metrics = await call.wait_for("hark.metrics", after=mark, timeout=5)
        response = done.data["response"]
        first = next(
            (
                e.at
                for e in call.events[mark:]
                if e.type == "response.output_audio.delta"
                and e.data["response_id"] == response["id"]
            ),
            None,
        )
        turn = dict(metrics.data["turn"])
        heard = next(
            (
                e.data["transcript"]
                for e in call.events[mark:]
                if e.type == "conversation.item.input_audio_transcription.completed"
            ),
            "",
        )
        return {
            "question": question,
            "heard_as": heard,
            "status": response["status"],
            "voice_to_voice_ms": None if first is None else round((first - last_voiced) * 1000, 1),
            **{key: turn.get(key) for key in BREAKDOWN},
            "speculative": turn.get("speculative"),
        }
    finally:
        await call.close()


async def webrtc_turn(url: str, api_key: str, question: str, pcm: np.ndarray) -> dict[str, Any]:
    client = CallClient(url, await mint_client_secret(url, api_key))
    try:
        await client.connect()
        await client.finish_saying()
        return await one_turn(client, question, pcm)
    finally:
        await client.hangup()


def summarize(results: list[dict[str, Any]]) -> dict[str, Any]:
    summary = {}
    for key in ("voice_to_voice_ms", *BREAKDOWN):
        values = [r[key] for r in results if isinstance(r.get(key), int | float)]
        summary[key] = {
            "p50": percentile(values, 50),
            "p95": percentile(values, 95),
            "n": len(values),
        }
    return summary


async def run(url: str, api_key: str, turns: int) -> dict[str, Any]:
    load_before = os.getloadavg()
    questions = [QUESTIONS[i % len(QUESTIONS)] for i in range(turns)]
    # Synthesized up front: Piper blocks, and a blocked loop would stall the microphones.
    ws_audio = {q: ws_utterance(q) for q in set(questions)}
    rtc_audio = {q: utterance(q) for q in set(questions)}
    results: dict[str, list[dict[str, Any]]] = {"websocket": [], "webrtc": []}
    for index, question in enumerate(questions):
        order = ("websocket", "webrtc") if index % 2 == 0 else ("webrtc", "websocket")
        for arm in order:
            try:
                if arm == "websocket":
                    result = await ws_turn(url, api_key, question, ws_audio[question])
                else:
                    result = await webrtc_turn(url, api_key, question, rtc_audio[question])
            except (CallError, AssertionError) as exc:
                result = {"question": question, "error": str(exc)[:300]}
            results[arm].append(result)
            print(json.dumps({"arm": arm, **result}), file=sys.stderr, flush=True)
    ws = summarize(results["websocket"])
    rtc = summarize(results["webrtc"])
    return {
        "turns": results,
        # The machine's 1/5/15-minute load averages: on a shared machine, read figures with it.
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "summary": {"websocket": ws, "webrtc": rtc},
        "voice_to_voice_ms": {
            "websocket": ws["voice_to_voice_ms"],
            "webrtc": rtc["voice_to_voice_ms"],
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--url")
    parser.add_argument("--api-key", default="")
    args = parser.parse_args()
    if args.url:
        report = asyncio.run(run(args.url, args.api_key, args.turns))
    else:
        from tests.server_process import running_server

        with running_server() as server:
            report = asyncio.run(run(server.url, server.api_key, args.turns))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
