"""Cheap silent WebRTC calls in processes of their own, to Hark or to Pipecat's bot.

Part of tests/bench/capacity.py. Each call sends the cached Opus silence packet (no
encoding) and only notes when each frame arrives, so the clients cost little beside the
server they measure; a silent call still receives 50 frames a second. The same client
serves both peers: to Hark through `CallClient` (client secret, `/v1/realtime/calls`), to
Pipecat's SmallWebRTC bot (tests/bench/pipecat/bot.py) through `PipecatCall` (`POST
/api/offer`, `DELETE /api/calls/{pc_id}`). Both receive with a 1-packet jitter prefetch.

A target is a dict, so it crosses to the spawned processes as is: `{"peer": "hark",
"url": ..., "api_key": ...}` or `{"peer": "pipecat", "url": ...}`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import multiprocessing
import time
from multiprocessing.connection import Connection
from typing import Any

import aiohttp
from aiortc import RTCPeerConnection
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from media.outbound import OutboundAudioTrack, opus_silence_packet
from server.tools.call_client import CallClient, mint_client_secret
from tests.bench.peers.pipecat import PipecatCall


class Arrivals:
    """Notes only when each received frame arrives (mixed into a call class)."""

    _pc: RTCPeerConnection
    arrivals: list[float]

    async def _record(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError, asyncio.CancelledError):
            while True:
                await track.recv()
                self.arrivals.append(time.monotonic())

    @property
    def ended(self) -> bool:
        return self._pc.connectionState in ("failed", "closed")

    def window(self, t0: float, t1: float) -> tuple[int, float]:
        """Frames received in [t0, t1) and the longest gap there (ms)."""
        times = [t for t in self.arrivals if t0 <= t < t1]
        gaps = [b - a for a, b in itertools.pairwise([t0, *times, t1])]
        return len(times), round(max(gaps) * 1000, 1)


class SilentCall(Arrivals, CallClient):
    """A Hark call that sends cached silence and notes only when each frame arrives."""

    def __init__(self, url: str, token: str) -> None:
        super().__init__(url, token)
        self.mic.silence_packet = opus_silence_packet()
        self.arrivals = []


class SilentPipecatCall(Arrivals, PipecatCall):
    """The same silent call to Pipecat's SmallWebRTC bot."""

    def __init__(self, url: str) -> None:
        mic = OutboundAudioTrack()
        mic.silence_packet = opus_silence_packet()
        super().__init__(url, mic, receive_prefetch=1)
        self.arrivals = []

    async def close(self) -> None:
        await self.hangup()


SilentPeerCall = SilentCall | SilentPipecatCall
# What a call that did not connect raises: Hark's CallError (a RuntimeError: "(503)" in
# it is a refusal), Pipecat's RuntimeError, a timeout, or the HTTP request failing.
CONNECT_ERRORS = (RuntimeError, TimeoutError, aiohttp.ClientError)


async def open_call(target: dict[str, Any]) -> SilentPeerCall:
    call: SilentPeerCall
    if target["peer"] == "pipecat":
        call = SilentPipecatCall(target["url"])
    else:
        token = await mint_client_secret(target["url"], target["api_key"], {})
        call = SilentCall(target["url"], token)
    try:
        await call.connect()
    except BaseException:
        await call.close()
        raise
    return call


# ---- the client processes ------------------------------------------------------------------


def client_process(conn: Connection, target: dict[str, Any]) -> None:
    asyncio.run(_serve_commands(conn, target))


async def _serve_commands(conn: Connection, target: dict[str, Any]) -> None:
    calls: list[SilentPeerCall] = []
    loop = asyncio.get_running_loop()
    while True:
        command: dict[str, Any] = await loop.run_in_executor(None, conn.recv)
        kind = command["kind"]
        if kind == "grow":
            await asyncio.sleep(command.get("offset_s", 0.0))
            refused = failed = 0
            errors: list[str] = []
            for _ in range(command["add"]):
                try:
                    calls.append(await open_call(target))
                except CONNECT_ERRORS as exc:
                    refused += "(503)" in str(exc)
                    failed += "(503)" not in str(exc)
                    errors.append(repr(exc)[:300])
                await asyncio.sleep(command.get("gap_s", 0.0))
            reply = {"refused": refused, "failed": failed, "live": len(calls)}
            conn.send({**reply, "errors": errors[:3]})
        elif kind == "measure":
            await asyncio.sleep(max(0.0, command["t0"] - time.monotonic()))
            cpu = time.process_time()
            await asyncio.sleep(max(0.0, command["t1"] - time.monotonic()))
            cpu = time.process_time() - cpu
            windows = [c.window(command["t0"], command["t1"]) for c in calls]
            conn.send(
                {
                    "cpu_s": cpu,
                    "frames": [w[0] for w in windows],
                    "gaps_ms": [w[1] for w in windows],
                    "ended": sum(c.ended for c in calls),
                }
            )
        elif kind == "hangup":
            await asyncio.gather(*(c.hangup() for c in calls), return_exceptions=True)
            calls.clear()
            conn.send({"live": 0})
        else:
            return


class Clients:
    """The client processes, driven level by level."""

    def __init__(self, target: dict[str, Any], procs: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.conns: list[Connection] = []
        self.procs = []
        for _ in range(procs):
            mine, theirs = context.Pipe()
            proc = context.Process(target=client_process, args=(theirs, target))
            proc.start()
            self.conns.append(mine)
            self.procs.append(proc)

    def ask(self, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for conn, command in zip(self.conns, commands, strict=True):
            conn.send(command)
        return [conn.recv() for conn in self.conns]

    def grow(self, add: int, gap_s: float = 0.0) -> dict[str, Any]:
        """`add` calls across the processes, one every `gap_s` overall; the counts, and
        the first few errors of the calls that did not connect."""
        n = len(self.conns)
        shares = [add // n + (i < add % n) for i in range(n)]
        replies = self.ask(
            [
                {"kind": "grow", "add": share, "gap_s": gap_s * n, "offset_s": gap_s * i}
                for i, share in enumerate(shares)
            ]
        )
        grown: dict[str, Any] = {
            key: sum(r[key] for r in replies) for key in ("refused", "failed", "live")
        }
        grown["errors"] = [e for r in replies for e in r["errors"]][:3]
        return grown

    def measure(self, t0: float, t1: float) -> dict[str, Any]:
        replies = self.ask([{"kind": "measure", "t0": t0, "t1": t1}] * len(self.conns))
        return {
            "cpu_s": sum(r["cpu_s"] for r in replies),
            "frames": [f for r in replies for f in r["frames"]],
            "gaps_ms": [g for r in replies for g in r["gaps_ms"]],
            "ended": sum(r["ended"] for r in replies),
        }

    def hangup(self) -> None:
        self.ask([{"kind": "hangup"}] * len(self.conns))

    def close(self) -> None:
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.send({"kind": "exit"})
        for proc in self.procs:
            proc.join(10)
            if proc.is_alive():
                proc.terminate()
