"""Where the "transport" part of voice-to-voice goes: one-way audio delay through aiortc.

    .venv/bin/python -m tests.bench.transport_latency [--bursts 30] [--load 2]

Two real aiortc peers in this process, on this machine's interface address (aioice skips
loopback), wired like a call: the "server" peer sends with Hark's OutboundAudioTrack and
reads the microphone with Hark's InboundAudio (16 kHz, 512-sample VAD frames); the "client"
peer is the benchmark client's microphone track and ReplyRecorder. Tone bursts go each way
at known times:

- downlink: the server track's first frame of a burst (what `first_frame_sent` stamps)
  to the client recorder's first audible frame (what voice_to_voice.py calls audible);
- uplink: the client microphone's first burst frame to the first 512-sample server frame
  that holds it (when the VAD could see it).

Each is measured with aiortc's stock receive buffer (prefetch 4) and with
media.jitter.shorten_audio_receive_delay (prefetch 1), optionally while `--load` threads
keep the CPU busy as Whisper and llama.cpp do. Also printed: Piper's quiet lead-in before
its first audible frame, and how late Silero + the segmenter place the end of speech,
both of which voice_to_voice.py counts as "transport". It prints; it never fails.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import statistics
import threading
import time
from typing import Any

import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection

from media.inbound import InboundAudio
from media.jitter import shorten_audio_receive_delay
from media.outbound import OutboundAudioTrack
from media.resample import Resampler
from server.tools.call_client import AUDIBLE_RMS, RATE, ReplyRecorder
from tests.speech import silence, speak

BURST_MS = 200
GAP_S = 0.5


def tone(ms: int = BURST_MS, rate: int = RATE) -> np.ndarray:
    t = np.arange(ms * rate // 1000) / rate
    return (8000 * np.sin(2 * np.pi * 1000 * t)).astype(np.int16)


def summary(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"n": 0, "p50": None, "p95": None}
    ordered = sorted(values)
    return {
        "n": len(values),
        "min": round(ordered[0], 1),
        "p50": round(statistics.median(ordered), 1),
        "p95": round(ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))], 1),
    }


def record_frame_times(track: OutboundAudioTrack) -> list[float]:
    """Wrap `track.recv` to note when aiortc takes each frame (to see the pacing)."""
    times: list[float] = []
    recv = track.recv

    async def timed_recv():  # type: ignore[no-untyped-def]
        frame = await recv()
        times.append(time.monotonic())
        return frame

    track.recv = timed_recv  # type: ignore[method-assign]
    return times


def gap_summary(times: list[float]) -> dict[str, Any]:
    gaps = [(b - a) * 1000 for a, b in itertools.pairwise(times)]
    late = sum(1 for g in gaps if g > 40)
    return {**summary(gaps), "max": round(max(gaps), 1) if gaps else None, "over_40ms": late}


class Call:
    """A connected pair: server (bot track out, InboundAudio in), client (mic, recorder)."""

    def __init__(self, prefetch: int | None) -> None:
        self.prefetch = prefetch
        self.server = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.client = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.bot = OutboundAudioTrack()
        self.bot_frame_times = record_frame_times(self.bot)
        self.mic = OutboundAudioTrack()
        self.recorder = ReplyRecorder()
        self.vad_frames: list[tuple[float, float]] = []  # (arrival, rms) per 512 samples
        self.inbound: InboundAudio | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        server_track: asyncio.Future[Any] = loop.create_future()
        client_track: asyncio.Future[Any] = loop.create_future()
        self.server.on("track", lambda t: server_track.done() or server_track.set_result(t))
        self.client.on("track", lambda t: client_track.done() or client_track.set_result(t))
        self.client.addTrack(self.mic)
        await self.client.setLocalDescription(await self.client.createOffer())
        await self.server.setRemoteDescription(self.client.localDescription)
        self.server.addTrack(self.bot)
        await self.server.setLocalDescription(await self.server.createAnswer())
        await self.client.setRemoteDescription(self.server.localDescription)
        if self.prefetch is not None:
            shorten_audio_receive_delay(self.server, self.prefetch)
            shorten_audio_receive_delay(self.client, self.prefetch)
        self.inbound = InboundAudio(await asyncio.wait_for(server_track, 20), self._on_vad_frame)
        self.inbound.start()
        self._tasks.append(asyncio.create_task(self._record(await client_track)))

    def _on_vad_frame(self, frame: np.ndarray, _end_ms: int) -> None:
        rms = float(np.sqrt(np.mean(frame.astype(np.float64) ** 2)))
        self.vad_frames.append((time.monotonic(), rms))

    async def _record(self, track: Any) -> None:
        resampler = Resampler(RATE)
        while True:
            self.recorder.add(resampler.frame(await track.recv()))

    async def burst(self, track: OutboundAudioTrack, name: str) -> float:
        """Queue a tone; the time its first frame was handed to aiortc."""
        started: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        track.on_playback_started = lambda _id: (
            started.done() or started.set_result(time.monotonic())
        )
        track.begin_response(name)
        track.push(tone(), RATE)
        track.end_response()
        return await asyncio.wait_for(started, 5)

    def vad_frame_after(self, t: float) -> float | None:
        return next((at for at, rms in self.vad_frames if at >= t and rms >= AUDIBLE_RMS), None)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self.inbound is not None:
            await self.inbound.stop()
        await self.client.close()
        await self.server.close()


async def measure(prefetch: int | None, bursts: int) -> dict[str, Any]:
    call = Call(prefetch)
    down: list[float] = []
    up: list[float] = []
    try:
        await call.connect()
        await asyncio.sleep(1.0)  # both streams flowing, silence on each
        for index in range(bursts):
            sent = await call.burst(call.bot, f"down-{index}")
            await asyncio.sleep(GAP_S)
            heard = call.recorder.first_audible_after(sent)
            if heard is not None:
                down.append((heard - sent) * 1000)
            sent = await call.burst(call.mic, f"up-{index}")
            await asyncio.sleep(GAP_S)
            seen = call.vad_frame_after(sent)
            if seen is not None:
                up.append((seen - sent) * 1000)
    finally:
        await call.close()
    return {
        "downlink_ms": summary(down),
        "uplink_to_vad_frame_ms": summary(up),
        "server_frame_gap_ms": gap_summary(call.bot_frame_times),
    }


def piper_lead_in_ms(texts: list[str]) -> dict[str, Any]:
    """Quiet 20 ms frames at the start of Piper's audio, before the first audible one."""
    leads = []
    for text in texts:
        pcm = speak(text, RATE).astype(np.float64)
        frames = [pcm[i : i + 960] for i in range(0, len(pcm) - 960, 960)]
        quiet = next(i for i, f in enumerate(frames) if np.sqrt(np.mean(f**2)) >= AUDIBLE_RMS)
        leads.append(quiet * 20.0)
    return summary(leads)


def vad_end_lag_ms(texts: list[str]) -> dict[str, Any]:
    """How much later than the last audible sample the server's `speech_end` falls.

    The session estimates speech_end = (time the segmenter stops) - silence_duration_ms;
    the client's voice-to-voice clock starts at the last audible 20 ms frame it sent.
    """
    from media.segmenter import SpeechSegmenter, SpeechStopped, TurnDetection
    from media.vad import SileroModel, SileroVad
    from server.tools.call_client import last_voiced_ms

    model = SileroModel.load()
    params = TurnDetection()
    lags = []
    for text in texts:
        speech = speak(text)
        pcm = np.concatenate([silence(500), speech, silence(1500)])
        voiced_end = 500 + last_voiced_ms(speech, 16000)
        vad = SileroVad(model)
        segmenter = SpeechSegmenter(params)
        for start in range(0, len(pcm) - 511, 512):
            frame = pcm[start : start + 512]
            end_ms = (start + 512) * 1000 // 16000
            events = segmenter.push(frame, vad(frame), end_ms)
            stop = next((e for e in events if isinstance(e, SpeechStopped)), None)
            if stop is not None:
                lags.append(stop.audio_end_ms - params.silence_duration_ms - voiced_end)
                break
    return summary(lags)


def burn_cpu(threads: int, nice: int, stop: threading.Event) -> list[threading.Thread]:
    """Threads doing float matrix products, as busy as Whisper or llama.cpp (GIL released),
    at niceness `nice` (Linux sets it per thread)."""

    def work() -> None:
        if nice:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
        a = np.random.default_rng(0).random((300, 300))
        while not stop.is_set():
            a = np.tanh(a @ a)

    workers = [threading.Thread(target=work, daemon=True) for _ in range(threads)]
    for worker in workers:
        worker.start()
    return workers


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bursts", type=int, default=30)
    parser.add_argument("--load", type=int, default=0, help="CPU-burning threads meanwhile")
    parser.add_argument("--load-nice", type=int, default=0, help="their niceness (0-19)")
    args = parser.parse_args()

    report: dict[str, Any] = {
        "bursts": args.bursts,
        "load_threads": args.load,
        "load_nice": args.load_nice,
    }
    stop = threading.Event()
    burn_cpu(args.load, args.load_nice, stop)
    try:
        for label, prefetch in (("aiortc stock (prefetch 4)", None), ("prefetch 1", 1)):
            report[label] = await measure(prefetch, args.bursts)
            print(label, json.dumps(report[label]), flush=True)
    finally:
        stop.set()
    replies = [
        "The capital of France is Paris.",
        "A spider has eight legs.",
        "Two plus two is four.",
        "Hello there, how can I help?",
        "William Shakespeare wrote it.",
        "Jupiter is the largest planet.",
    ]
    report["piper_quiet_lead_in_ms"] = piper_lead_in_ms(replies)
    questions = [
        "What is the capital of France?",
        "How many legs does a spider have?",
        "What color is the sky?",
        "What is two plus two?",
        "Who wrote Romeo and Juliet?",
        "What is the largest planet?",
    ]
    report["vad_speech_end_lag_ms"] = vad_end_lag_ms(questions)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
