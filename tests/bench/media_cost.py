"""CPU of one call's media path, stage by stage, without a network: where a silent call's
cycles go on the server.

    .venv/bin/python -m tests.bench.media_cost [--seconds 60] [--profile] [--base DIR]

Drives the real modules with real Opus packets made by aiortc's own encoder, as fast as
they go (no pacing), and prints CPU microseconds per second of call for each stage:

- inbound: aiortc's OpusDecoder on each 20 ms packet -> `InboundAudio` (resample to 16 kHz
  mono, 512-sample frames) -> Silero VAD + the segmenter (what `TurnTaking.push` does);
- outbound: `OutboundAudioTrack.recv()` (a 20 ms frame of silence when idle) -> what
  RTCRtpSender does with it: a frame gets aiortc's audio level and its OpusEncoder in the
  default executor, a packet (the cached silence) is packed as is.

A second of call is 50 packets each way. `--profile` adds cProfile's top frames of the
whole path. `--base DIR` runs the same benchmark also against the `media/` package of
another checkout (e.g. `git archive <commit> | tar -x -C DIR`) in a subprocess, right
after this one, and prints both: compare ratios from one run, the machine is shared.
aiortc's own network work (SRTP, RTP, RTCP, ICE, the jitter buffer, the decoder thread)
is not here: tests/bench/silent_calls.py measures whole calls. It never fails.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import os
import pstats
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import av
import numpy as np
from aiortc import rtp
from aiortc.codecs.opus import OpusDecoder, OpusEncoder
from aiortc.jitterbuffer import JitterFrame

from media import outbound as outbound_module
from media.inbound import InboundAudio
from media.outbound import OutboundAudioTrack
from media.segmenter import SpeechSegmenter, TurnDetection
from media.vad import SileroModel, SileroVad

PACKETS_PER_S = 50


def opus_packets(pcm48: np.ndarray) -> list[bytes]:
    """Real Opus packets of 48 kHz mono audio, 20 ms each, from aiortc's encoder."""
    encoder = OpusEncoder()
    packets: list[bytes] = []
    for i in range(0, len(pcm48) - 959, 960):
        frame = av.AudioFrame.from_ndarray(pcm48[i : i + 960].reshape(1, -1), layout="mono")
        frame.sample_rate = 48000
        frame.pts = i
        frame.time_base = encoder.codec.time_base
        payloads, _ = encoder.encode(frame)
        packets.extend(payloads)
    return packets


class _DecodedTrack:
    """The remote track as InboundAudio sees it: decoded frames, one per packet."""

    def __init__(self, packets: list[bytes]) -> None:
        self._decoder = OpusDecoder()
        self._packets = iter(packets)
        self._timestamp = 0

    async def recv(self) -> av.AudioFrame:
        data = next(self._packets, None)
        if data is None:
            from aiortc.mediastreams import MediaStreamError

            raise MediaStreamError
        frames = self._decoder.decode(JitterFrame(data=data, timestamp=self._timestamp))
        self._timestamp += 960
        return frames[0]


def _listener(model: SileroModel) -> Callable[[np.ndarray, int], None]:
    vad = SileroVad(model)
    segmenter = SpeechSegmenter(TurnDetection())

    def on_frame(frame: np.ndarray, end_ms: int) -> None:
        segmenter.push(frame, vad(frame), end_ms)

    return on_frame


async def inbound(packets: list[bytes], model: SileroModel) -> None:
    done = asyncio.Event()
    audio = InboundAudio(
        _DecodedTrack(packets), _listener(model), on_ended=done.set, gap_fill_s=None
    )
    audio.start()
    await done.wait()


async def outbound(frames: int) -> None:
    fake = [0.0]

    def clock() -> float:
        fake[0] += 0.02  # every frame is due at once: no pacing sleeps
        return fake[0]

    track = OutboundAudioTrack(clock=clock, resync_silence=False)
    track.on_frame_sent = lambda pcm, at: None
    packet = getattr(outbound_module, "opus_silence_packet", None)
    if packet is not None:  # this checkout's transport sets it for an Opus call
        track.silence_packet = packet()
    encoder = OpusEncoder()
    loop = asyncio.get_running_loop()
    for _ in range(frames):
        data = await track.recv()
        # What RTCRtpSender does with each: a frame gets its audio level and is encoded
        # in the default executor; a packet is packed as is.
        if isinstance(data, av.AudioFrame):
            rtp.compute_audio_level_dbov(data)
            await loop.run_in_executor(None, encoder.encode, data)
        else:
            encoder.pack(data)


def measure(seconds: int, profile: bool) -> dict[str, Any]:
    model = SileroModel.load()
    packets = opus_packets(np.zeros(seconds * 48000, dtype=np.int16))
    n = len(packets)
    result: dict[str, Any] = {"seconds": seconds, "packets": n}
    for name, make in (
        ("inbound", lambda: inbound(packets, model)),
        ("outbound", lambda: outbound(n)),
    ):
        asyncio.run(make())  # warm up (model, codecs)
        started = time.process_time()
        asyncio.run(make())
        cpu = time.process_time() - started
        result[f"{name}_us_per_call_s"] = round(cpu * 1e6 * PACKETS_PER_S / n, 1)
    total = result["inbound_us_per_call_s"] + result["outbound_us_per_call_s"]
    result["percent_of_a_core_per_call"] = round(total / 1e4, 2)
    if profile:
        profiler = cProfile.Profile()
        profiler.enable()
        asyncio.run(inbound(packets, model))
        asyncio.run(outbound(n))
        profiler.disable()
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(15)
        result["profile"] = out.getvalue()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--base", help="another checkout whose media/ to measure too")
    parser.add_argument("--json", action="store_true", help="one JSON line (for --base)")
    args = parser.parse_args()
    runs = [("this checkout", None)]
    if args.base:
        runs.append((f"base {args.base}", args.base))
    for label, base in runs:
        if base is None:
            result = measure(args.seconds, args.profile)
        else:
            env = {**os.environ, "PYTHONPATH": os.path.abspath(base)}
            # The base's own copy of this file may not exist: run this one, its media/.
            code = (
                "import sys, json; sys.path.insert(0, sys.argv[1]); "
                "import media; assert media.__file__.startswith(sys.argv[1]), media.__file__; "
                f"sys.path.append({os.getcwd()!r}); "
                "from tests.bench.media_cost import measure; "
                "print(json.dumps(measure(int(sys.argv[2]), sys.argv[3] == '1')))"
            )
            out = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    code,
                    os.path.abspath(base),
                    str(args.seconds),
                    "1" if args.profile else "0",
                ],
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            if out.returncode:
                print(f"{label}: failed\n{out.stderr[-2000:]}")
                continue
            result = json.loads(out.stdout.strip().splitlines()[-1])
        profile_text = result.pop("profile", None)
        print(f"== {label}: {json.dumps(result)}")
        if profile_text:
            print(profile_text)


if __name__ == "__main__":
    main()
