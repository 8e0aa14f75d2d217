"""Voice-to-voice latency benchmark: N spoken turns through real WebRTC, printed as JSON.

    .venv/bin/python -m tests.bench.voice_to_voice [--turns 10] [--url URL --api-key KEY]
        [--versus '{"audio": {"input": {"turn_detection": {"speculative_reply": false}}}}']
        [--versus-env HARK_FIRST_CHUNK_WORDS=0,HARK_X=…]

Starts its own server on the embedded defaults unless --url is given. Each turn is a
fresh question spoken by Piper into the `call` client's microphone; voice-to-voice is the
client-side time from the last voiced sample sent to the first audible reply frame
received. The server's `hark.metrics` event gives the breakdown. With `--versus SESSION`,
each question is asked twice, once with that session, and each arm is summarized apart: a
comparison within one run, so other load on the machine falls on both. With
`--versus-env`, the versus arm is a second server started with those settings (both
idle but for the turn in progress): server settings compared the same way. It measures
and prints; it never fails on a number.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import statistics
import sys
import time
from typing import Any

import numpy as np

from server.tools.call_client import AUDIBLE_RMS, CallClient, CallError, mint_client_secret
from tests.speech import silence, speak

QUESTIONS = [
    "What is the capital of France?",
    "How many legs does a spider have?",
    "What color is the sky?",
    "What is two plus two?",
    "Who wrote Romeo and Juliet?",
    "What is the largest planet?",
    "How many days are in a week?",
    "What do bees make?",
    "What is the opposite of hot?",
    "Which animal says moo?",
]

BREAKDOWN = (
    "vad_wait_ms",
    "response_start_ms",
    "stt_ms",
    "llm_first_token_ms",
    "first_clause_ms",
    "tts_first_audio_ms",
    "first_frame_sent_ms",
)


def percentile(values: list[float], pct: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return round(ordered[index], 1)


def utterance(question: str) -> np.ndarray:
    return np.concatenate([silence(300, 48000), speak(question, 48000), silence(1200, 48000)])


async def one_turn(client: CallClient, question: str, pcm: np.ndarray) -> dict[str, Any]:
    mark = len(client.events)
    mark_time = time.monotonic()
    speech_end = await client.say(pcm, 48000)
    done = await client.wait_for("response.done", after=mark, timeout=90)
    metrics = await client.wait_for("hark.metrics", after=mark, timeout=5)
    first_audio = client.recorder.first_audible_after(speech_end)
    turn = dict(metrics.data["turn"])
    v2v = None if first_audio is None else round((first_audio - speech_end) * 1000, 1)
    transcript = next(
        (
            e.data["transcript"]
            for e in client.events[mark:]
            if e.type.endswith("input_audio_transcription.completed")
        ),
        "",
    )
    sent = turn.get("first_frame_sent_ms")
    return {
        "question": question,
        "heard_as": transcript,
        "reply": done.data["response"]["output"][0]["content"][0]["transcript"],
        "status": done.data["response"]["status"],
        "voice_to_voice_ms": v2v,
        **{key: turn.get(key) for key in BREAKDOWN},
        "speculative": turn.get("speculative"),  # the reply was begun at the pause
        "transport_ms": None if v2v is None or sent is None else round(v2v - sent, 1),
        # The outbound track must keep its 20 ms pace while STT, LLM and TTS work.
        "max_frame_gap_ms": max_frame_gap_ms(client, mark_time),
        # The longest silence inside the reply: a first chunk spoken before the next is
        # ready shows here (Piper's own pauses between sentences do too).
        "longest_pause_ms": longest_pause_ms(client, speech_end),
    }


def longest_pause_ms(client: CallClient, since: float) -> float | None:
    """The longest run of inaudible frames between the reply's first and last audible ones."""
    rec = client.recorder
    loud = [
        level >= AUDIBLE_RMS for at, level in zip(rec.times, rec.levels, strict=True) if at >= since
    ]
    if True not in loud:
        return None
    first, last = loud.index(True), len(loud) - 1 - loud[::-1].index(True)
    longest = run = 0
    for flag in loud[first : last + 1]:
        run = 0 if flag else run + 1
        longest = max(longest, run)
    return longest * 20.0


def max_frame_gap_ms(client: CallClient, since: float) -> float | None:
    times = [t for t in client.recorder.times if t >= since]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    return round(max(gaps) * 1000, 1) if gaps else None


async def run(
    url: str,
    api_key: str,
    turns: int,
    versus: dict[str, Any] | None = None,
    versus_server: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """`versus_server` (url, api key): the versus arm's server (else `url`'s)."""
    results = []
    # Synthesize up front: Piper blocks, and a blocked client loop would make its
    # microphone burst audio to catch up, corrupting the "speech ended" timestamp.
    pairs = versus is not None  # each question asked in both arms, in turn
    questions = [
        QUESTIONS[(index // 2 if pairs else index) % len(QUESTIONS)] for index in range(turns)
    ]
    utterances = {question: utterance(question) for question in set(questions)}
    for index, question in enumerate(questions):
        # Arms alternate, and so does which arm asks a question first.
        arm = "versus" if pairs and (index + index // 2) % 2 else "default"
        arm_url, arm_key = versus_server if arm == "versus" and versus_server else (url, api_key)
        token = await mint_client_secret(arm_url, arm_key, versus if arm == "versus" else None)
        client = CallClient(arm_url, token)
        try:
            await client.connect()
            await client.finish_saying()
            results.append({"arm": arm, **await one_turn(client, question, utterances[question])})
            print(json.dumps(results[-1]), file=sys.stderr, flush=True)
        except CallError as exc:
            results.append({"arm": arm, "error": str(exc)})
        finally:
            await client.hangup()
    if versus is None:
        return {"turns": results, "summary": summarize(results)}
    return {
        "turns": results,
        "versus": versus,
        "summary": summarize([r for r in results if r["arm"] == "default"]),
        "summary_versus": summarize([r for r in results if r["arm"] == "versus"]),
    }


def summarize(results: list[dict[str, Any]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for key in (
        "voice_to_voice_ms",
        *BREAKDOWN,
        "transport_ms",
        "max_frame_gap_ms",
        "longest_pause_ms",
    ):
        values = [r[key] for r in results if isinstance(r.get(key), int | float)]
        summary[key] = {
            "p50": percentile(values, 50),
            "p95": percentile(values, 95),
            "median": round(statistics.median(values), 1) if values else None,
            "n": len(values),
        }
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--url")
    parser.add_argument("--api-key", default="")
    parser.add_argument("--versus", help="a session (JSON) for every other turn, compared")
    parser.add_argument(
        "--versus-env",
        help="KEY=VALUE[,KEY=VALUE…]: every other turn on a second server with these settings",
    )
    args = parser.parse_args()
    versus = json.loads(args.versus) if args.versus else None
    if args.url:
        report = asyncio.run(run(args.url, args.api_key, args.turns, versus))
        print(json.dumps(report, indent=2))
        return
    from tests.server_process import running_server

    with running_server() as server:
        if not args.versus_env:
            report = asyncio.run(run(server.url, server.api_key, args.turns, versus))
        else:
            env = dict(pair.split("=", 1) for pair in args.versus_env.split(",") if pair)
            with running_server(env) as other:
                arm = (other.url, other.api_key)
                report = asyncio.run(run(server.url, server.api_key, args.turns, versus or {}, arm))
                report["versus_env"] = env
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
