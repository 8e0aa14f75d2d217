"""Piper shared by calls: a new reply's first audio while other calls' replies are spoken.

    PYTHONPATH=$PWD .venv/bin/python -m tests.bench.tts_fairness [--busy 3] [--rounds 10]

Each round starts `--busy` long replies 150 ms apart (five sentences each, all written at
once, as a fast LLM would), each through its own `ClauseSpeaker` onto a track that plays
in real time, then a short reply ("The capital of France is Paris.") 0.4-0.9 s later,
and times its first audio. Two arms, alternated round by round on the same loaded voice:
`fifo` (every job due when asked: the order the engine thread had before) and `edf` (a
later clause is due when its reply's queued audio runs out: server.engines.deadlines).
Also printed: how long the busy replies' tracks ran dry mid-reply (the cost to them).
Prints JSON; never fails on a number.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time

import numpy as np

from server.engines.piper_tts import PiperTTS
from server.reply.heard_text import HeardText
from server.reply.speech import ClauseSpeaker
from server.turns.timings import TurnTimings

STORY = [
    "Once upon a time, a brave dragon lived high on a misty mountain.",
    "Every morning she flew over the valley to watch the villagers work.",
    "One day a storm broke the old bridge that joined the two halves of the town.",
    "The dragon carried stones in her claws until the bridge stood again.",
    "From then on, the children left her honey cakes at the foot of the mountain.",
]
QUESTION_REPLY = "The capital of France is Paris."


class PlayingTrack:
    """Audio pushed plays in real time from when it is pushed; notes where it ran dry."""

    def __init__(self) -> None:
        self.end = 0.0
        self.dry_s = 0.0
        self.first_at: float | None = None

    def push(self, pcm: np.ndarray, rate: int) -> None:
        now = time.monotonic()
        if self.first_at is None:
            self.first_at = now
        elif now > self.end:
            self.dry_s += now - self.end
        self.end = max(now, self.end) + len(pcm) / rate

    def queued_s(self) -> float:
        return max(0.0, self.end - time.monotonic())


async def speak(tts: PiperTTS, sentences: list[str], track: PlayingTrack, edf: bool) -> None:
    speaker = ClauseSpeaker(
        tts, voice="alloy", speed=1.0, heard=HeardText(), timings=TurnTimings(),
        play=track.push, audio_ahead=track.queued_s if edf else lambda: 0.0,
    )  # fmt: skip
    clauses: asyncio.Queue[str | None] = asyncio.Queue()
    for sentence in sentences:
        clauses.put_nowait(sentence)
    clauses.put_nowait(None)
    await speaker.speak(clauses)


async def one_round(tts: PiperTTS, busy: int, edf: bool, rng: random.Random) -> dict[str, float]:
    tracks = [PlayingTrack() for _ in range(busy)]
    tasks = []
    for track in tracks:
        tasks.append(asyncio.create_task(speak(tts, STORY, track, edf)))
        await asyncio.sleep(0.15)
    await asyncio.sleep(rng.uniform(0.4, 0.9))
    new = PlayingTrack()
    asked = time.monotonic()
    await speak(tts, [QUESTION_REPLY], new, edf)
    await asyncio.gather(*tasks)
    assert new.first_at is not None
    return {
        "first_audio_ms": (new.first_at - asked) * 1000,
        "busy_dry_ms": sum(t.dry_s for t in tracks) * 1000 / busy,
    }


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"p50": round(statistics.median(ordered), 1), "p95": round(p95, 1)}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--busy", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    tts = PiperTTS()
    await tts.load()
    rng = random.Random(7)
    results: dict[str, list[dict[str, float]]] = {"fifo": [], "edf": []}
    for _ in range(args.rounds):
        for arm in ("fifo", "edf"):
            results[arm].append(await one_round(tts, args.busy, arm == "edf", rng))
    print(
        json.dumps(
            {
                "busy_replies": args.busy,
                "rounds": args.rounds,
                **{
                    arm: {key: summary([r[key] for r in rounds]) for key in rounds[0]}
                    for arm, rounds in results.items()
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
