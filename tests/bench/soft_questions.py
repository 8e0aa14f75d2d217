"""Questions softer than the bot, over its reply's echo, through the whole echo listener.

    PYTHONPATH=$PWD .venv/bin/python -m tests.bench.soft_questions --cases 8 [--words]
        [--transcripts] [--warm]

The simulated client of tests/echo_path.py (real Piper replies and voices, real Silero,
the real segmenter, `EchoListener` at `auto`), its echo found as it would be: each
question `--levels` dB under the bot, 0.3-2 s into the reply, over a room's echo and over
a bare delayed copy; and the same replies' echo alone. A question is "heard" when a turn
began within 600 ms of its onset, "late" when one began only later (its first words were
gated as echo), "lost" when none did. `--words`: the listener judges unjudged holds by
their words too (server/turns/own_words.py, real Whisper). `--transcripts`: the share of
each question's words in the Whisper transcript of its turns, as the gate handed them
and as the transcript hears them (media/echo/refit.py), mean per arm. `--warm`: an earlier
reply first, so the echo is known and AEC3 has converged. Prints JSON; never fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections import Counter
from dataclasses import replace

import numpy as np

from server.engines.faster_whisper_stt import FasterWhisperSTT
from server.turns.own_words import OwnWords, words
from tests.echo_path import REPLIES, ListeningClient, echo_cases, run_case

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
    parser.add_argument("--transcripts", action="store_true")
    parser.add_argument("--warm", action="store_true")
    args = parser.parse_args()
    stt = None
    whisper = FasterWhisperSTT(beam_size=5, cpu_threads=2)
    if args.words or args.transcripts:
        asyncio.run(whisper.load())
        stt = whisper if args.words else None

    def share(turns: list[np.ndarray], said: str) -> float:
        text = " ".join(asyncio.run(whisper.transcribe_detailed(t)).text for t in turns)
        heard = set(words(text))
        return sum(w in heard for w in words(said)) / len(words(said))

    def client(reply: str) -> ListeningClient:
        return ListeningClient(None if stt is None else OwnWords(stt, lambda: reply))

    rng = np.random.default_rng(7)
    report: dict[str, object] = {"words": args.words, "warm": args.warm}
    for room in (True, False):
        arm = "room" if room else "bare"
        for level in (float(x) for x in args.levels.split(",")):
            counts: Counter[str] = Counter()
            shares: Counter[str] = Counter()
            for i, case in enumerate(echo_cases(args.cases, user=True, seed=21)):
                asked = replace(case, room=room, user_gain_db=level)
                asked = replace(asked, user_at=float(rng.uniform(0.3, 2.0)))
                listening = client(asked.reply)
                warm = REPLIES[(i + 5) % len(REPLIES)] if args.warm else None
                result = run_case(asked, listening, warm_reply=warm, tail_seconds=4.0)  # type: ignore[arg-type]
                assert result.user_onset_ms is not None and asked.user is not None
                counts[outcome(listening.started, result.user_onset_ms)] += 1
                if args.transcripts:
                    shares["gate"] += share(listening.turns, asked.user) / args.cases
                    shares["refitted"] += share(listening.refitted, asked.user) / args.cases
            report[f"questions_{arm}_{level:+.0f}dB"] = dict(counts)
            if args.transcripts:
                report[f"words_heard_{arm}_{level:+.0f}dB"] = {
                    k: round(v, 2) for k, v in shares.items()
                }
        false_turns = 0
        for case in echo_cases(args.cases, user=False, seed=22):
            listening = client(case.reply)
            warm = REPLIES[(case.seed + 5) % len(REPLIES)] if args.warm else None
            run_case(replace(case, room=room), listening, warm_reply=warm, tail_seconds=4.0)  # type: ignore[arg-type]
            false_turns += bool(listening.started)
        report[f"echo_only_{arm}_turns"] = f"{false_turns}/{args.cases}"
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
