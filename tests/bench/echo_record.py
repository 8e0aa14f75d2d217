"""Record real WebRTC echo calls, then replay them through the current EchoGuard offline.

    .venv/bin/python -m tests.bench.echo_record record --dir .bench/echo_calls --turns 10
    .venv/bin/python -m tests.bench.echo_record replay --dir .bench/echo_calls

`record` starts a Hark server whose every EchoGuard writes what it was given (each sent
frame with its send time, each microphone frame with its audio clock and arrival time,
and its verdict) under `--dir`, then runs the turn-taking benchmark's `echo` and
`echo_speech` trials against it, keeping the client's stamps (when the interruption's
first voiced frame was sent): the ground truth a replay is judged against. Times are
`time.monotonic()`, one clock for both processes.

`replay` feeds each recorded call through a fresh guard, real Silero and the real
segmenter, and prints per call when the user's interruption was first detected (ms
after its onset reached the server) and whether echo alone started a turn. The replay
is open loop: after the recorded server paused its reply, the echo in the recording
stops when it did, whatever the replayed guard decides; detection up to that point is
exact. Measures and prints; never fails.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

NEAR = np.dtype([("end_ms", "<i8"), ("now", "<f8"), ("echo_only", "u1"), ("pcm", "<i2", 512)])
FAR = np.dtype([("sent_at", "<f8"), ("pcm", "<i2", 960)])


def install_recorder(root: Path) -> None:
    """Make every EchoGuard created in this process record its inputs under `root`."""
    from media.echo import guard as echo_guard
    from server.turns import echo_listening

    base = echo_guard.EchoGuard

    class RecordingGuard(base):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            folder = root / f"call-{time.monotonic():.3f}"
            folder.mkdir(parents=True, exist_ok=True)
            self._far_file = (folder / "far.bin").open("ab", buffering=0)
            self._near_file = (folder / "near.bin").open("ab", buffering=0)

        def far_end(self, frame: np.ndarray, sent_at: float, sample_rate: int = 48000) -> None:
            if sample_rate == 48000 and frame.shape == (960,):
                record = np.zeros(1, FAR)
                record["sent_at"], record["pcm"] = sent_at, frame
                self._far_file.write(record.tobytes())
            super().far_end(frame, sent_at, sample_rate)

        def near_end(self, frame: np.ndarray, audio_end_ms: int, now: float | None = None):
            now = time.monotonic() if now is None else now
            verdict = super().near_end(frame, audio_end_ms, now)
            record = np.zeros(1, NEAR)
            record["end_ms"], record["now"] = audio_end_ms, now
            record["echo_only"], record["pcm"] = verdict.echo_only, frame
            self._near_file.write(record.tobytes())
            return verdict

    echo_guard.EchoGuard = RecordingGuard  # type: ignore[misc]
    echo_listening.EchoGuard = RecordingGuard  # type: ignore[misc]  # each call's listener


def serve(root: Path) -> None:
    install_recorder(root)
    os.environ["HARK_WORKERS"] = "1"  # the recorder is patched into this process only
    from server.cli import main

    sys.exit(main(["-v", "serve"]))


@contextlib.contextmanager
def recording_server(root: Path) -> Iterator[tuple[str, str]]:
    """A Hark server (as tests/server_process.py starts one) that records its guards."""
    from tests.server_process import _health, free_port, stop_process

    port, key = free_port(), "sk-test-echo-record"
    env = {
        **os.environ,
        "HARK_HOST": "127.0.0.1",
        "HARK_PORT": str(port),
        "HARK_API_KEYS": key,
        "HF_HUB_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
    }
    log = (root / "server.log").open("wb")
    command = [sys.executable, "-m", "tests.bench.echo_record", "serve", "--dir", str(root)]
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"server exited, see {root / 'server.log'}")
            with contextlib.suppress(OSError):
                if _health(url)[0] == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("server not ready")
            time.sleep(0.3)
        yield url, key
    finally:
        stop_process(process)
        log.close()


def record(
    root: Path, turns: int, scenarios: list[str], session: dict[str, Any] | None = None
) -> None:
    from tests.acoustic import EchoingMicrophone
    from tests.bench import turn_taking
    from tests.bench.peers.hark import HarkPeer

    said: list[dict[str, Any]] = []

    class StampedMicrophone(EchoingMicrophone):
        def say(self, pcm: np.ndarray, label: str = ""):  # type: ignore[no-untyped-def]
            item = super().say(pcm, label)
            said.append({"label": label, "item": item, "delay_ms": self.delay_s * 1000})
            return item

    original = turn_taking.echoing

    def echoing(index: int) -> EchoingMicrophone:
        mic = original(index)
        stamped = StampedMicrophone(mic.delay_s * 1000, 20 * np.log10(mic.gain))
        return stamped

    turn_taking.echoing = echoing
    root.mkdir(parents=True, exist_ok=True)
    sounds = turn_taking.Sounds()
    trials: list[dict[str, Any]] = []
    with recording_server(root) as (url, key):
        peer = HarkPeer(url, key, session)

        async def run() -> None:
            for index in range(turns):
                for scenario in scenarios:
                    said.clear()
                    result = await turn_taking.trial(peer, scenario, sounds, index)
                    result["scenario"] = scenario
                    result["said"] = [
                        {
                            "label": s["label"],
                            "onset": s["item"].onset,
                            "end": s["item"].end,
                            "delay_ms": s["delay_ms"],
                        }
                        for s in said
                    ]
                    trials.append(result)
                    brief = {k: result.get(k) for k in ("scenario", "honoured", "stop_client_ms")}
                    print(json.dumps(brief), file=sys.stderr)
                    (root / "trials.json").write_text(json.dumps(trials, indent=1))
                    await asyncio.sleep(0.5)

        asyncio.run(run())


@dataclass
class Recording:
    folder: Path
    near: np.ndarray
    far: np.ndarray

    @classmethod
    def load(cls, folder: Path) -> Recording:
        near = np.fromfile(folder / "near.bin", NEAR)
        far = np.fromfile(folder / "far.bin", FAR)
        return cls(folder, near, far)

    def audio_ms(self, t: float) -> float:
        """Where server time `t` falls on the inbound audio clock: the frame that arrived
        first after it, less one frame (its own length). Robust to the audio clock jumping
        (a stalled inbound stream), unlike one offset for the whole call."""
        i = min(int(np.searchsorted(self.near["now"], t)), len(self.near) - 1)
        return float(self.near["end_ms"][i]) - 32.0

    @property
    def anchor(self) -> float:
        """Server time of audio clock 0 (least-delayed arrival), as the guard sets it."""
        return float(np.min(self.near["now"] - self.near["end_ms"] / 1000))


def replay(
    recording: Recording, guard: Any, onset: float | None = None
) -> dict[str, Any]:  # pragma: no cover - a tool
    """Feed the recording to `guard` in arrival order into Silero and the segmenter."""
    from media.segmenter import SpeechSegmenter, SpeechStarted, TurnDetection
    from media.vad import SileroModel, SileroVad

    vad = SileroVad(SileroModel.load())
    segmenter = SpeechSegmenter(TurnDetection())
    near, far = recording.near, recording.far
    onset_ms = None if onset is None else recording.audio_ms(onset)
    starts: list[int] = []
    echo_only: list[bool] = []
    f = 0
    costs = []
    for record in near:
        while f < len(far) and far["sent_at"][f] <= record["now"]:
            guard.far_end(far["pcm"][f], float(far["sent_at"][f]))
            f += 1
        t = time.thread_time()
        verdict = guard.near_end(record["pcm"], int(record["end_ms"]), float(record["now"]))
        costs.append(time.thread_time() - t)
        echo_only.append(verdict.echo_only)
        p = vad(verdict.frame)
        for event in segmenter.push(
            verdict.frame, 0.0 if verdict.echo_only else p, record["end_ms"]
        ):
            if isinstance(event, SpeechStarted):
                starts.append(int(record["end_ms"]))
    return {
        "starts_ms": starts,
        "onset_ms": onset_ms,
        "echo_only": echo_only,
        "delay_ms": guard.delay_ms,
        "cpu_ms": costs,
    }


def replay_all(root: Path) -> None:
    """Replay every recorded call through the current EchoGuard; print one line each."""
    from media.echo.guard import EchoGuard

    trials = json.loads((root / "trials.json").read_text())
    recordings = [Recording.load(p) for p in sorted(root.glob("call-*"))]
    rows = []
    for trial in trials:
        said = {s["label"]: s for s in trial.get("said", [])}
        if "question" not in said:
            continue
        asked = said["question"]["onset"]
        recording = next(
            (
                r
                for r in recordings
                if len(r.near) and r.near["now"][0] <= asked <= r.near["now"][-1]
            ),
            None,
        )
        if recording is None:
            continue
        onset = said.get("interruption", {}).get("onset")
        result = replay(recording, EchoGuard(), onset)
        on = result["onset_ms"]
        answer_ms = recording.audio_ms(said["question"]["end"])
        echo_starts = [s for s in result["starts_ms"] if s > answer_ms + 300]
        row = {
            "call": recording.folder.name,
            "scenario": trial.get("scenario"),
            "echo": [trial.get("echo_delay_ms"), trial.get("echo_gain_db")],
            "honoured_live": trial.get("honoured"),
            "delay_ms": None if result["delay_ms"] is None else round(result["delay_ms"]),
            "cpu_ms_p95": round(float(np.percentile(result["cpu_ms"], 95)) * 1000, 2),
        }
        if on is None:
            row["echo_starts"] = len(echo_starts)
        else:
            hits = [s for s in echo_starts if s >= on - 100]
            row["detected_after_ms"] = round(hits[0] - on) if hits else None
            row["starts_before_onset"] = len(echo_starts) - len(hits)
        rows.append(row)
        print(json.dumps(row), flush=True)
    found = [r.get("detected_after_ms") for r in rows if "detected_after_ms" in r]
    hit = sorted(f for f in found if f is not None)
    summary = {
        "barge_ins": len(found),
        "detected": len(hit),
        "detected_after_ms_p50": hit[len(hit) // 2] if hit else None,
        "echo_only_calls": sum("echo_starts" in r for r in rows),
        "echo_only_with_a_start": sum(bool(r.get("echo_starts")) for r in rows),
    }
    print(json.dumps(summary))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("record", "replay", "serve"))
    parser.add_argument("--dir", default=".bench/echo_calls")
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--scenarios", default="echo,echo_speech")
    parser.add_argument("--session", help="JSON session for the calls (e.g. instructions)")
    args = parser.parse_args()
    root = Path(args.dir)
    if args.command == "serve":
        serve(root)
    elif args.command == "record":
        session = json.loads(args.session) if args.session else None
        record(root, args.turns, args.scenarios.split(","), session)
    else:
        replay_all(root)


if __name__ == "__main__":
    main()
