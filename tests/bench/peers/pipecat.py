"""Pipecat as a benchmark peer: its SmallWebRTC transport, driven by the same acoustic client.

`running()` prepares and starts everything Pipecat needs, in its own venv so nothing of
it touches Hark's: tests/bench/pipecat/setup.sh (once; timed), llama.cpp's
OpenAI-compatible server on Hark's GGUF (from Hark's venv, where llama-cpp-python is
built), then tests/bench/pipecat/bot.py. A call posts the offer to the bot's
`/api/offer` (Pipecat's convention) with an audio-only, data-channel-less offer, and
reads the bot's frame log (`/api/events/{pc_id}`) for its signals: an
`InterruptionFrame` is Pipecat cancelling its reply (it has no pause/resume), a
`TranscriptionFrame` a transcript, `LLMFullResponseStartFrame` a reply starting.
Server-side barge-in time is not reported (null), as Pipecat has no such measure.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from media.jitter import shorten_audio_receive_delay
from media.resample import Resampler
from tests.acoustic import RATE, ReplyRecorder, ScriptedMicrophone
from tests.bench.peers.base import Signals
from tests.server_process import ROOT, free_port, stop_process

SETUP = ROOT / "tests" / "bench" / "pipecat" / "setup.sh"
BOT = ROOT / "tests" / "bench" / "pipecat" / "bot.py"
VENV = ROOT / ".bench" / "pipecat-venv"
START_TIMEOUT_S = 240


def engine_paths() -> dict[str, Path]:
    """Hark's packaged weights, found the way Hark finds them (sha256-checked)."""
    from server.config import Config
    from server.engines.faster_whisper_stt import packaged_model
    from server.engines.llama_cpp_llm import assemble_gguf
    from server.engines.piper_tts import packaged_voice

    cache = Path(os.environ.get("HARK_CACHE_DIR") or Config().cache_dir)
    return {
        "gguf": assemble_gguf(cache),
        "whisper": packaged_model(),
        "voice": packaged_voice()[0],
    }


def wait_http(url: str, process: subprocess.Popen[bytes], log: Path, what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text()[-3000:]
            raise RuntimeError(f"{what} exited with {process.returncode}:\n{tail}")
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        time.sleep(0.3)
    raise RuntimeError(f"{what} not ready in {START_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")


def signals_from_log(events: list[dict[str, Any]]) -> Signals:
    """Pipecat interrupts at every user turn start, speaking or not; an interruption
    cancels a reply only while one is under way: from its LLM start to its last
    bot-stopped-speaking (or, if it never spoke, to the next reply)."""
    signals = Signals(raw=events, transcripts_are_turns=False)
    ordered = sorted(events, key=lambda e: float(e["t"]))
    starts = [float(e["t"]) for e in ordered if e["type"] == "llm_response_start"]
    windows = []
    for index, start in enumerate(starts):
        following = starts[index + 1] if index + 1 < len(starts) else float("inf")
        stops = [
            float(e["t"])
            for e in ordered
            if e["type"] == "bot_stopped_speaking" and start <= float(e["t"]) < following
        ]
        windows.append((start, max(stops) if stops else following))
    signals.responses = starts
    for event in ordered:
        at, kind = float(event["t"]), event["type"]
        if kind == "transcript":
            signals.transcripts.append((at, str(event.get("text", "")).strip()))
        elif kind == "interruption":
            started = next((a for a, b in windows if a <= at <= b), None)
            if started is None:
                continue
            if not signals.cancels or at - signals.cancels[-1][0] > 0.05:  # sent both ways
                signals.cancels.append((at, started))
    return signals


class PipecatCall:
    def __init__(
        self, base_url: str, mic: MediaStreamTrack, receive_prefetch: int | None = None
    ) -> None:
        """`mic`: any audio track (a `ScriptedMicrophone`, or an `OutboundAudioTrack` for
        cheap silent calls); `receive_prefetch`: as `CallClient`'s (None keeps aiortc's 4)."""
        self.base_url = base_url
        self.mic = mic
        self.receive_prefetch = receive_prefetch
        self.ear = ReplyRecorder()
        self.pc_id: str | None = None
        self._pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self._tasks: list[asyncio.Task[None]] = []

    async def connect(self, timeout: float = 20.0) -> None:
        pc = self._pc
        connected = asyncio.get_running_loop().create_future()

        @pc.on("connectionstatechange")
        def on_state() -> None:
            if pc.connectionState == "connected" and not connected.done():
                connected.set_result(None)

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "audio":
                self._tasks.append(asyncio.create_task(self._record(track)))

        pc.addTrack(self.mic)
        await pc.setLocalDescription(await pc.createOffer())
        if self.receive_prefetch is not None:
            shorten_audio_receive_delay(pc, self.receive_prefetch)
        async with aiohttp.ClientSession() as http:
            async with http.post(
                f"{self.base_url}/api/offer",
                json={"sdp": pc.localDescription.sdp, "type": pc.localDescription.type},
            ) as resp:
                if resp.status != 200:
                    text = await resp.text()
                    raise RuntimeError(f"pipecat refused the offer ({resp.status}): {text}")
                answer = await resp.json()
        self.pc_id = answer["pc_id"]
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))
        await asyncio.wait_for(connected, timeout)

    async def _record(self, track: MediaStreamTrack) -> None:
        resampler = Resampler(RATE)
        with contextlib.suppress(MediaStreamError, asyncio.CancelledError):
            while True:
                self.ear.add(resampler.frame(await track.recv()))

    def _quoted_id(self) -> str:
        return urllib.parse.quote(self.pc_id or "", safe="")  # Pipecat's ids contain '#'

    async def signals(self) -> Signals:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{self.base_url}/api/events/{self._quoted_id()}") as resp:
                events: list[dict[str, Any]] = await resp.json()
        return signals_from_log(events)

    async def hangup(self) -> None:
        if self.pc_id is not None:
            with contextlib.suppress(aiohttp.ClientError):
                async with aiohttp.ClientSession() as http:
                    await http.delete(f"{self.base_url}/api/calls/{self._quoted_id()}")
        for task in self._tasks:
            task.cancel()
        self.mic.stop()
        await self._pc.close()


class PipecatPeer:
    name = "pipecat"

    def __init__(self) -> None:
        self.url: str | None = None
        self.info: dict[str, Any] = {}
        self.pids: dict[str, int] = {}  # "llm", "bot": for benches that read /proc

    @contextlib.contextmanager
    def running(self) -> Iterator[PipecatPeer]:
        started = time.monotonic()
        subprocess.run(["bash", str(SETUP)], check=True, stdout=sys.stderr)
        self.info["setup_s"] = round(time.monotonic() - started, 1)
        self.info["version"] = subprocess.run(
            [str(VENV / "bin" / "python"), "-c", "import importlib.metadata as m;"
             "print(m.version('pipecat-ai'))"],
            check=True, capture_output=True, text=True,
        ).stdout.strip()  # fmt: skip
        paths = engine_paths()
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
        llm_port, bot_port = free_port(), free_port()
        logs = Path(tempfile.mkdtemp(prefix="bench-pipecat-"))
        self.info["logs"] = str(logs)
        processes: list[subprocess.Popen[bytes]] = []
        try:
            started = time.monotonic()
            with (logs / "llama.log").open("wb") as out:
                processes.append(subprocess.Popen(
                    [sys.executable, "-m", "llama_cpp.server", "--model", str(paths["gguf"]),
                     "--host", "127.0.0.1", "--port", str(llm_port), "--n_ctx", "2048",
                     "--n_threads", "2",
                     # The GGUF has no chat template; vicuna's USER:/ASSISTANT: suits a
                     # base model (see tests/test_engines_openai_llm.py).
                     "--chat_format", "vicuna"],
                    env=env, stdout=out, stderr=subprocess.STDOUT,
                ))  # fmt: skip
            llm_url = f"http://127.0.0.1:{llm_port}/v1"
            wait_http(f"{llm_url}/models", processes[0], logs / "llama.log", "llama_cpp.server")
            self.pids["llm"] = processes[0].pid
            with (logs / "bot.log").open("wb") as out:
                processes.append(subprocess.Popen(
                    [str(VENV / "bin" / "python"), str(BOT), "--port", str(bot_port),
                     "--llm-url", llm_url, "--llm-model", paths["gguf"].name,
                     "--whisper-model", str(paths["whisper"]),
                     "--piper-voice", str(paths["voice"])],
                    cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                ))  # fmt: skip
            self.url = f"http://127.0.0.1:{bot_port}"
            wait_http(f"{self.url}/api/health", processes[1], logs / "bot.log", "pipecat bot")
            self.pids["bot"] = processes[1].pid
            self.info["start_s"] = round(time.monotonic() - started, 1)
            yield self
        finally:
            self.url = None
            self.pids = {}
            for process in reversed(processes):
                stop_process(process, timeout=10)

    async def call(self, mic: ScriptedMicrophone) -> PipecatCall:
        assert self.url, "PipecatPeer.call() outside running()"
        call = PipecatCall(self.url, mic)
        try:
            await call.connect()
        except BaseException:
            await call.hangup()
            raise
        return call
