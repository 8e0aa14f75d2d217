"""Questions softer than the bot, over its reply's echo, through the whole echo listener.

    PYTHONPATH=$PWD .venv/bin/python -m tests.bench.soft_questions --cases 8 [--words]

The simulated client of tests/echo_path.py (real Piper replies and voices, real Silero,
the real segmenter, `EchoListener` at `auto`), its echo found as it would be: each
question `--levels` dB under the bot, 0.3-2 s into the reply, over a room's echo and over
a bare delayed copy; and the same replies' echo alone. A question is "heard" when a turn
began within 600 ms of its onset, "late" when one began only later (its first words were
gated as echo), "lost" when none did. `--words`: the listener judges unjudged holds by
their words too (server/turns/own_words.py, real Whisper). Prints JSON; never fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections import Counter
from dataclasses import replace

import numpy as np

from server.engines.faster_whisper_stt import FasterWhisperSTT
from server.turns.own_words import OwnWords
from tests.echo_path import ListeningClient, echo_cases, run_case

HEARD_WITHIN_MS = 600


def outcome(started: list[int], onset_ms: int) -> str:
    if any(abs(at - onset_ms) < HEARD_WITHIN_MS for at in started):
        return "heard"
    return "late" if any(at > onset_ms for at in started) else "lost"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cases", type=int, default=8)
    parser.add_argument("--levels", default="-14,-10,-6", help="dB of the bot, comma-separated")
    parser.add_argument("--words", action="store_true")
    args = parser.parse_args()
    stt = None
    if args.words:
        stt = FasterWhisperSTT(beam_size=5, cpu_threads=2)
        asyncio.run(stt.load())

    def client(reply: str) -> ListeningClient:
        return ListeningClient(None if stt is None else OwnWords(stt, lambda: reply))

    rng = np.random.default_rng(7)
    report: dict[str, object] = {"words": args.words}
    for room in (True, False):
        arm = "room" if room else "bare"
        for level in (float(x) for x in args.levels.split(",")):
            counts: Counter[str] = Counter()
            for case in echo_cases(args.cases, user=True, seed=21):
                asked = replace(case, room=room, user_gain_db=level)
                asked = replace(asked, user_at=float(rng.uniform(0.3, 2.0)))
                listening = client(asked.reply)
                result = run_case(asked, listening, tail_seconds=4.0)  # type: ignore[arg-type]
                assert result.user_onset_ms is not None
                counts[outcome(listening.started, result.user_onset_ms)] += 1
            report[f"questions_{arm}_{level:+.0f}dB"] = dict(counts)
        false_turns = 0
        for case in echo_cases(args.cases, user=False, seed=22):
            listening = client(case.reply)
            run_case(replace(case, room=room), listening, tail_seconds=4.0)  # type: ignore[arg-type]
            false_turns += bool(listening.started)
        report[f"echo_only_{arm}_turns"] = f"{false_turns}/{args.cases}"
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
