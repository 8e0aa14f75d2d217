"""OpenAI's Python SDK on Hark's WebSocket, as an app would use it, for tests and benchmarks.

`SdkCall` connects with `client.realtime.connect()` (base URL pointed at Hark), keeps every
server event as the SDK parsed it (its class name and its dict), streams a microphone by
`input_audio_buffer.append` at real-time pace (silence between utterances, as a live mic
does), and decodes every `response.output_audio.delta` with its arrival time.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from openai import AsyncOpenAI

from media import g711

CHUNK_MS = 100
AUDIBLE_RMS = 300


@dataclass
class SdkEvent:
    at: float  # time.monotonic() of arrival
    data: dict[str, Any]
    parsed_as: str  # the SDK's class for it

    @property
    def type(self) -> str:
        return str(self.data.get("type"))


@dataclass
class ReplyAudio:
    """Decoded `response.output_audio.delta` audio, per delta, with arrival times."""

    rate: int = 24000
    chunks: list[tuple[float, str, np.ndarray]] = field(default_factory=list)

    def of(self, response_id: str) -> np.ndarray:
        parts = [pcm for _, rid, pcm in self.chunks if rid == response_id]
        return np.concatenate(parts) if parts else np.zeros(0, np.int16)

    def first_after(self, t: float) -> float | None:
        return next((at for at, _, _ in self.chunks if at >= t), None)


def rms(pcm: np.ndarray) -> float:
    return float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2))) if len(pcm) else 0.0


def last_voiced_s(pcm: np.ndarray, rate: int) -> float:
    """Where the last audible 20 ms of `pcm` ends, in seconds from its start."""
    step = rate // 50
    for end in range(len(pcm), 0, -step):
        if rms(pcm[max(0, end - step) : end]) >= AUDIBLE_RMS:
            return end / rate
    return 0.0


def ws_url(http_url: str) -> str:
    return http_url.replace("http://", "ws://", 1).replace("https://", "wss://", 1)


class SdkCall:
    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        model: str | None = "hark",
        call_id: str | None = None,
        input_format: str = "pcm16",  # or "ulaw" (8 kHz)
    ) -> None:
        self.client = AsyncOpenAI(
            api_key=token, base_url=f"{base_url}/v1", websocket_base_url=f"{ws_url(base_url)}/v1"
        )
        kwargs: dict[str, Any] = {"call_id": call_id} if call_id else {"model": model}
        self._manager = self.client.realtime.connect(**kwargs)
        self.conn: Any = None
        self.events: list[SdkEvent] = []
        self.audio = ReplyAudio()
        self.output_law: str | None = None  # "ulaw"/"alaw" once the output is G.711
        self.input_format = input_format
        self._mic: deque[np.ndarray] = deque()
        self._tasks: list[asyncio.Task[None]] = []
        self._waiters: list[asyncio.Future[None]] = []
        self.close_code: int | None = None

    # ---- connection ---------------------------------------------------------------------

    async def connect(self, *, microphone: bool = True) -> None:
        self.conn = await self._manager.enter()
        self._tasks.append(asyncio.create_task(self._read()))
        await self.wait_for("session.created", timeout=20)
        if microphone:
            self._tasks.append(asyncio.create_task(self._microphone()))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            await self.conn.close()
        await self.client.close()

    async def _read(self) -> None:
        try:
            async for event in self.conn:
                data = event.to_dict()
                received = SdkEvent(time.monotonic(), data, type(event).__name__)
                if received.type == "response.output_audio.delta":
                    raw = base64.b64decode(data["delta"])
                    pcm = (
                        g711.decode(raw, self.output_law)
                        if self.output_law
                        else np.frombuffer(raw, "<i2").astype(np.int16)
                    )
                    self.audio.chunks.append((received.at, data["response_id"], pcm))
                self.events.append(received)
                for waiter in self._waiters:
                    if not waiter.done():
                        waiter.set_result(None)
        finally:
            self.close_code = getattr(self.conn._connection, "close_code", None)
            for waiter in self._waiters:
                if not waiter.done():
                    waiter.set_result(None)

    # ---- events -------------------------------------------------------------------------

    def types(self) -> list[str]:
        return [e.type for e in self.events]

    async def send(self, event: dict[str, Any]) -> None:
        await self.conn.send(event)

    async def wait_for(
        self,
        type_: str,
        predicate: Callable[[dict[str, Any]], bool] | None = None,
        *,
        after: int = 0,
        timeout: float = 60.0,
    ) -> SdkEvent:
        def find() -> SdkEvent | None:
            for event in self.events[after:]:
                if event.type == type_ and (predicate is None or predicate(event.data)):
                    return event
            return None

        async def wait() -> SdkEvent:
            while (found := find()) is None:
                if self._tasks and self._tasks[0].done():
                    last = [e.data for e in self.events[-3:]]
                    raise AssertionError(f"connection closed before {type_}: {last}")
                waiter = asyncio.get_running_loop().create_future()
                self._waiters.append(waiter)
                try:
                    await waiter
                finally:
                    self._waiters.remove(waiter)
            return found

        try:
            return await asyncio.wait_for(wait(), timeout)
        except TimeoutError as exc:
            got = self.types()[-15:]
            raise AssertionError(f"no {type_} in {timeout:.0f} s; got {got}") from exc

    # ---- the microphone -----------------------------------------------------------------

    @property
    def mic_rate(self) -> int:
        return 8000 if self.input_format == "ulaw" else 24000

    def say(self, pcm: np.ndarray) -> asyncio.Future[float]:
        """Queue `pcm` (at `mic_rate`) after what is queued; resolves to the time its last
        voiced chunk was appended (voice-to-voice is measured from there)."""
        step = self.mic_rate * CHUNK_MS // 1000
        voiced_end = last_voiced_s(pcm, self.mic_rate)
        last_voiced_chunk = max(0, int(np.ceil(voiced_end * self.mic_rate / step)) - 1)
        done: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        for index, start in enumerate(range(0, len(pcm), step)):
            chunk = pcm[start : start + step]
            if index == last_voiced_chunk:
                chunk = _Marked(chunk, done)
            self._mic.append(chunk)
        return done

    @property
    def saying(self) -> bool:
        return bool(self._mic)

    async def _microphone(self) -> None:
        """Appends 100 ms every 100 ms (silence when nothing is queued), on a fixed
        schedule, as a live microphone does: each chunk once its 100 ms have passed."""
        step = self.mic_rate * CHUNK_MS // 1000
        started = time.monotonic()
        sent = 0
        while True:
            sent += 1
            await asyncio.sleep(max(0.0, started + sent * CHUNK_MS / 1000 - time.monotonic()))
            chunk = self._mic.popleft() if self._mic else np.zeros(step, np.int16)
            if self.input_format == "ulaw":
                raw = g711.encode(np.asarray(chunk), "ulaw")
            else:
                raw = np.asarray(chunk).astype("<i2").tobytes()
            await self.conn.input_audio_buffer.append(audio=base64.b64encode(raw).decode())
            if isinstance(chunk, _Marked) and not chunk.done.done():
                chunk.done.set_result(time.monotonic())


class _Marked(np.ndarray):
    """A chunk that resolves a future when it has been appended."""

    done: asyncio.Future[float]

    def __new__(cls, chunk: np.ndarray, done: asyncio.Future[float]) -> _Marked:
        marked = np.asarray(chunk).view(cls)
        marked.done = done
        return marked
