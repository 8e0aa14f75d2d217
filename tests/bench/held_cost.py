"""How long the echo listener's decisions on held voices stop the event loop: inline
against off the loop (`server.turns.off_loop`), alternated call by call.

    PYTHONPATH=$PWD nice -n 19 .venv/bin/python -m tests.bench.held_cost --cases 8

Plays simulated calls (tests/echo_path.py: real Piper replies and voices, real Silero)
through an `EchoListener` at `auto`: users talking over the echo of a first reply (held,
then judged by what was sent: `EchoGuard.explain_held`), and the same users over a
client with no echo (onset checks: `EchoGuard.voice_could_be_echo`). Each call is played
twice, its frames heard inline (`hear`, as before) and through `InOrder` (as
`TurnTaking` does), on an event loop with a heartbeat task waking every 0.5 ms: a
frame's stall is the longest the heartbeat could not run while the frame was handled.
Prints per mode: the decisions' wall time and how many ran on the loop's thread, the
stall of frames with a decision and of all frames (p50/p90/max ms), and each frame's
time until it was heard. Measures and prints; never fails.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from media.vad import SileroModel, SileroVad
from server.turns.echo_listening import EchoListener, Heard
from server.turns.off_loop import InOrder, Steps
from tests.echo_path import early_barge_in_cases, echo_cases, run_case

WORK = ("explain_held", "voice_could_be_echo")


class Shim:
    """`run_case`'s guard seen through an `EchoListener`, each frame on `loop`."""

    def __init__(self, loop: asyncio.AbstractEventLoop, off_loop: bool) -> None:
        self.listener = EchoListener("auto")
        self.guard = self.listener.guard
        self.vad = SileroVad(SileroModel.load())
        self.loop = loop
        self.inputs = InOrder("bench") if off_loop else None
        self.delay_ms = None
        self.work: dict[str, list[tuple[float, int]]] = {name: [] for name in WORK}
        for name in WORK:
            setattr(self.guard, name, self._timed(name, getattr(self.guard, name)))
        self.stalls: list[float] = []  # per frame: the longest the loop could not run
        self.busy: list[float] = []  # ... of the frames with a decision
        self.waits: list[float] = []  # per frame: until it was heard
        self.spans: list[tuple[float, float, str]] = []  # this frame's work: start, end, what
        self.during: list[float] = []  # per frame with a decision: the stall during it
        self.inside: dict[str, list[float]] = {name: [] for name in WORK}  # ... begun in it

    def _timed(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*args)
            finally:
                end = time.perf_counter()
                self.work[name].append((end - t, threading.get_ident()))
                self.spans.append((t, end, name))

        return timed

    def far_end(self, frame, sent_at):  # type: ignore[no-untyped-def]
        if self.inputs is None:
            self.guard.far_end(frame, sent_at)
        else:
            self.inputs.handle(lambda: self.guard.far_end(frame, sent_at))

    def near_end(self, frame, audio_end_ms, now=None):  # type: ignore[no-untyped-def]
        done = sum(len(w) for w in self.work.values())
        heard = self.loop.run_until_complete(self._frame(frame, audio_end_ms, now))
        if sum(len(w) for w in self.work.values()) > done:
            self.busy.append(self.stalls[-1])
        return type("Verdict", (), {"frame": heard.frame, "echo_only": heard.probability == 0})

    async def _frame(self, frame, audio_end_ms, now) -> Heard:  # type: ignore[no-untyped-def]
        self.spans = []
        beats = [time.perf_counter()]

        async def beat() -> None:
            while True:
                await asyncio.sleep(0.0005)
                beats.append(time.perf_counter())

        heartbeat = asyncio.create_task(beat())
        if self.inputs is None:
            heard = self.listener.hear(frame, audio_end_ms, self.vad, 0.5, in_turn=False, now=now)
        else:
            future: asyncio.Future[Heard] = self.loop.create_future()

            def item() -> Steps[None]:
                steps = self.listener.steps(
                    frame, audio_end_ms, self.vad, 0.5, in_turn=False, now=now
                )
                future.set_result((yield from steps))

            self.inputs.handle(item)
            heard = await future
        beats.append(time.perf_counter())
        heartbeat.cancel()
        self.waits.append(beats[-1] - beats[0])
        self.stalls.append(float(np.max(np.diff(beats))))
        if self.spans:
            a, b = min(t for t, _, _ in self.spans), max(t for _, t, _ in self.spans)
            self.during.append(max(y - x for x, y in itertools.pairwise(beats) if y > a and x < b))
            inside = [y - x for x, y in itertools.pairwise(beats) if a <= x < b]
            self.inside[self.spans[-1][2]].append(max(inside, default=0.0))
        return heard


def summary(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    ms = np.array(values) * 1000
    return {
        "n": len(values),
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p90_ms": round(float(np.percentile(ms, 90)), 3),
        "max_ms": round(float(ms.max()), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=8)
    parser.add_argument(
        "--switch-ms", type=float, default=None, help="sys.setswitchinterval for the run"
    )
    args = parser.parse_args()
    if args.switch_ms is not None:
        sys.setswitchinterval(args.switch_ms / 1000)
    loop = asyncio.new_event_loop()
    cases = [
        *early_barge_in_cases(args.cases, room=False),
        *[replace(c, user_at=c.user_at % 0.4) for c in echo_cases(args.cases, user=True, seed=4)],
    ]
    modes = {"inline": False, "off_loop": True}
    shims: dict[str, list[Shim]] = {mode: [] for mode in modes}
    loads = []
    for case in cases:
        for with_echo in (True, False):  # False: a client with no echo (onset checks)
            for mode, off_loop in modes.items():  # A/B, alternated call by call
                shim = Shim(loop, off_loop)
                run_case(case, shim, with_echo=with_echo)  # type: ignore[arg-type]
                shims[mode].append(shim)
        loads.append(os.getloadavg()[0])
    loop_thread = threading.get_ident()
    out: dict[str, Any] = {
        "load_1min": [min(loads), max(loads)],
        "switch_interval_ms": sys.getswitchinterval() * 1000,
    }
    for mode, runs in shims.items():
        result: dict[str, Any] = {}
        for name in WORK:
            calls = [c for shim in runs for c in shim.work[name]]
            result[name] = {
                **summary([s for s, _ in calls]),
                "on_loop_thread": sum(t == loop_thread for _, t in calls),
            }
        result["stall_frames_with_decision"] = summary([s for shim in runs for s in shim.busy])
        result["stall_during_decision"] = summary([s for shim in runs for s in shim.during])
        for name in WORK:
            stalls = [s for shim in runs for s in shim.inside[name]]
            result[f"stall_begun_in_{name}"] = summary(stalls)
        result["stall_all_frames"] = summary([s for shim in runs for s in shim.stalls])
        result["frame_until_heard"] = summary([s for shim in runs for s in shim.waits])
        out[mode] = result
    loop.close()
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
