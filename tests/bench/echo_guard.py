"""Echo figures for EchoGuard on the simulated glasses client (tests/echo_path.py).

    .venv/bin/python -m tests.bench.echo_guard --cases 20

Prints JSON: self-interruptions over echo-only replies (the first reply of a call, cold
guard, and a later reply, after the guard heard another one), barge-in detection and
onset delay over echo + user speech (first and later reply), the canceller's ERLE, and
the guard's cost per 32 ms frame. The `..._early` figures put the user 150-400 ms into
the echo of a call's first reply (as the WebRTC `echo_speech` trials do), in the room and
without it (`no_room`: the echo a delayed, attenuated copy, as the WebRTC test client
makes it); `no_room` echo-only replies are also played with the echo slipping 20 ms
later mid-reply (a client's playout buffer). Measures and prints; never fails.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

import numpy as np

from media.echo.guard import EchoGuard
from tests.echo_path import REPLIES, early_barge_in_cases, echo_cases, erle_db, run_case


class TimedGuard(EchoGuard):
    """Counts the CPU time (this thread: AEC3 runs in it too) spent in the guard per
    microphone frame, so other processes on a busy machine do not inflate it."""

    def __init__(self) -> None:
        super().__init__()
        self.costs: list[float] = []
        self._far = 0.0

    def far_end(self, frame, sent_at, sample_rate=48000):
        t = time.thread_time()
        super().far_end(frame, sent_at, sample_rate)
        self._far += time.thread_time() - t

    def near_end(self, frame, audio_end_ms, now=None):
        t = time.thread_time()
        verdict = super().near_end(frame, audio_end_ms, now)
        self.costs.append(time.thread_time() - t + self._far)
        self._far = 0.0
        return verdict


def pct(values: list[float], q: float) -> float | None:
    return None if not values else round(float(np.percentile(values, q)), 3)


def barge_in(cases, warm: bool) -> dict:
    detected, delays, added = 0, [], []
    for i, case in enumerate(cases):
        warm_reply = REPLIES[(i + 7) % len(REPLIES)] if warm else None
        guarded = run_case(case, EchoGuard(), warm_reply=warm_reply)
        alone = run_case(case, None, warm_reply=warm_reply, with_echo=False)
        hits = [d for d in guarded.detected_ms if d >= (guarded.user_onset_ms or 0) - 200]
        if hits:
            detected += 1
            delays.append(hits[0] - (guarded.user_onset_ms or 0))
            if alone.detected_ms:
                added.append(hits[0] - alone.detected_ms[0])
    return {
        "cases": len(cases),
        "detected": detected,
        "detected_within_400ms": sum(d <= 400 for d in delays),
        "onset_to_speech_started_ms": {"p50": pct(delays, 50), "p95": pct(delays, 95)},
        "added_vs_no_echo_ms": {"p50": pct(added, 50), "p95": pct(added, 95)},
    }


def no_room(n: int) -> dict:
    """Self-interruptions on first replies echoed without a room, steady and slipping."""
    cases = [replace(c, room=False) for c in echo_cases(n, user=False, seed=9)]
    return {
        "cases": n,
        "self_interruptions": sum(bool(run_case(c, EchoGuard()).started_ms) for c in cases),
        "self_interruptions_slip_20ms": sum(
            bool(run_case(c, EchoGuard(), slip_ms=20.0).started_ms) for c in cases
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cases", type=int, default=20)
    args = parser.parse_args()

    interruptions, erles, costs, delay_errors = 0, [], [], []
    for case in echo_cases(args.cases, user=False):
        guard = TimedGuard()
        result = run_case(case, guard)
        interruptions += bool(result.started_ms)
        erles.append(erle_db(result))
        costs += guard.costs
        if result.delay_ms is not None:
            delay_errors.append(result.delay_ms - case.delay_ms)
    unguarded = sum(bool(run_case(c, None).started_ms) for c in echo_cases(args.cases, False))
    later_interruptions, later_erles = 0, []
    for i, case in enumerate(echo_cases(args.cases, user=False, seed=5)):
        result = run_case(case, EchoGuard(), warm_reply=REPLIES[(i + 7) % len(REPLIES)])
        later_interruptions += bool(result.started_ms)
        later_erles.append(erle_db(result, from_ms=result.reply_echo_ms))

    path_changes = {}
    for change in (-150.0, 100.0, 250.0):
        count = 0
        for i, case in enumerate(echo_cases(args.cases, user=False, seed=3)):
            warm = REPLIES[(i + 7) % len(REPLIES)]
            count += bool(
                run_case(case, EchoGuard(), warm_reply=warm, delay_change_ms=change).started_ms
            )
        path_changes[f"{change:+.0f}ms"] = count

    report = {
        "echo_only": {
            "cases": args.cases,
            "self_interruptions": interruptions,
            "self_interruptions_without_guard": unguarded,
            "erle_db": {"mean": round(float(np.mean(erles)), 1), "min": round(min(erles), 1)},
            "delay_error_ms": {"p50": pct(delay_errors, 50), "max": pct(delay_errors, 100)},
        },
        "echo_only_later_reply": {
            "cases": args.cases,
            "self_interruptions": later_interruptions,
            "erle_db": {
                "mean": round(float(np.mean(later_erles)), 1),
                "min": round(min(later_erles), 1),
            },
        },
        "echo_only_path_moved_between_replies": {
            "cases_each": args.cases,
            "self_interruptions": path_changes,
        },
        "barge_in_first_reply": barge_in(echo_cases(args.cases, user=True), warm=False),
        "barge_in_first_reply_early": barge_in(
            early_barge_in_cases(args.cases, room=True), warm=False
        ),
        "barge_in_first_reply_early_no_room": barge_in(
            early_barge_in_cases(args.cases, room=False), warm=False
        ),
        "echo_only_no_room": no_room(args.cases),
        "barge_in_later_reply": barge_in(echo_cases(args.cases, user=True), warm=True),
        "cpu_ms_per_32ms_frame": {
            "p50": pct([c * 1000 for c in costs], 50),
            "p95": pct([c * 1000 for c in costs], 95),
        },
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
