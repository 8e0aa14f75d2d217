"""OpenAI's Python SDK translations client on Hark, for tests and the latency benchmark.

`SdkTranslation` connects with `client.realtime.translations.connect(model=…)` (base URL
pointed at Hark), keeps every server event as the SDK parsed it with its arrival time,
streams source speech by `session.input_audio_buffer.append` in 200 ms chunks at
real-time pace (then silence, as a live microphone keeps sending), and decodes the
translated speech from `session.output_audio.delta`. Source speech comes from espeak-ng
in the language asked for (a real synthetic voice, not tones).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from typing import Any

import numpy as np
from openai import AsyncOpenAI

from media.resample import Resampler
from media.wav import read_wav

RATE = 24_000
CHUNK_MS = 200
CHUNK = RATE * CHUNK_MS // 1000
ESPEAK_VOICES = {"es": "es", "pt": "pt-br", "en": "en-us", "de": "de", "fr": "fr"}


def espeak(text: str, language: str, rate: int = RATE) -> np.ndarray:
    """`text` spoken by espeak-ng's voice for `language`, int16 mono at `rate`."""
    binary = shutil.which("espeak-ng")
    assert binary, "espeak-ng is needed for the translation tests (apt-get install espeak-ng)"
    with tempfile.NamedTemporaryFile(suffix=".wav") as wav:
        voice = ESPEAK_VOICES.get(language, language)
        subprocess.run(
            [binary, "-w", wav.name, "-v", voice, "-s", "150", text],
            check=True,
            capture_output=True,
        )
        pcm, source_rate = read_wav(wav.name)
    resampler = Resampler(rate)
    return np.concatenate([resampler.pcm(pcm, source_rate), resampler.flush()])


def wait_for_translation(url: str, tries: int = 240) -> dict[str, Any]:
    """Translation loads after the call engines: poll /healthz until it says it is ready."""
    health: dict[str, Any] = {}
    for _ in range(tries):
        with urllib.request.urlopen(f"{url}/healthz") as response:
            health = json.loads(response.read())
        if "translation" in health:
            return health
        time.sleep(1)
    raise AssertionError(f"translation never became ready: {health}")


@dataclass
class Received:
    at: float
    data: dict[str, Any]
    parsed_as: str

    @property
    def type(self) -> str:
        return str(self.data.get("type"))


class SdkTranslation:
    def __init__(self, base_url: str, token: str, model: str = "gpt-realtime-translate") -> None:
        self.client = AsyncOpenAI(api_key=token, base_url=base_url.rstrip("/") + "/v1")
        self.model = model
        self.events: list[Received] = []
        self._manager: Any = None
        self.connection: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._arrived = asyncio.Event()
        self.closed = False

    async def connect(self) -> None:
        self._manager = self.client.realtime.translations.connect(model=self.model)
        self.connection = await self._manager.__aenter__()
        self._reader = asyncio.create_task(self._read())
        await self.wait_for("session.created")

    async def _read(self) -> None:
        with contextlib.suppress(Exception):
            async for parsed in self.connection:
                self.events.append(
                    Received(time.monotonic(), parsed.model_dump(), type(parsed).__name__)
                )
                self._arrived.set()
        self.closed = True
        self._arrived.set()

    async def wait_for(self, type_: str, after: int = 0, timeout: float = 60) -> Received:
        deadline = time.monotonic() + timeout
        while True:
            for received in self.events[after:]:
                if received.type == type_:
                    return received
            left = deadline - time.monotonic()
            if left <= 0 or self.closed:
                seen = [e.type for e in self.events[after:]]
                raise AssertionError(f"no {type_} within {timeout} s; got {seen}")
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), left)

    async def update(self, session: dict[str, Any]) -> None:
        await self.connection.session.update(session=session)

    async def append(self, pcm: np.ndarray) -> None:
        data = pcm.astype("<i2").tobytes()
        await self.connection.session.input_audio_buffer.append(
            audio=base64.b64encode(data).decode("ascii")
        )

    async def stream(self, pcm: np.ndarray, *, realtime: bool = True) -> float:
        """Append `pcm` in 200 ms chunks at real-time pace; returns when it was all sent."""
        started = time.monotonic()
        for index, offset in enumerate(range(0, len(pcm), CHUNK)):
            if realtime:
                await asyncio.sleep(max(0.0, started + index * CHUNK_MS / 1000 - time.monotonic()))
            await self.append(pcm[offset : offset + CHUNK])
        return time.monotonic()

    async def close(self) -> None:
        """`session.close`: the server speaks what is left, then says `session.closed`."""
        if not self.closed:
            await self.connection.session.close()
            with contextlib.suppress(AssertionError):
                await self.wait_for("session.closed", timeout=60)
        await self.disconnect()

    async def disconnect(self) -> None:
        with contextlib.suppress(Exception):
            await self._manager.__aexit__(None, None, None)
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(BaseException):
                await self._reader
        await self.client.close()

    def text(self, type_: str) -> str:
        return "".join(e.data["delta"] for e in self.events if e.type == type_)

    def of(self, type_: str) -> list[Received]:
        return [e for e in self.events if e.type == type_]

    def audio(self) -> np.ndarray:
        deltas = self.of("session.output_audio.delta")
        parts = [np.frombuffer(base64.b64decode(e.data["delta"]), "<i2") for e in deltas]
        return np.concatenate(parts).astype(np.int16) if parts else np.zeros(0, np.int16)
