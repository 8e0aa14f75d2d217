"""Text-to-speech with the espeak-ng command: robotic, but tiny, instant, and everywhere.

The fallback when Piper cannot load. Each call runs `espeak-ng --stdout`, reading the
text on stdin (never argv, where a leading "-" would be an option) and streaming the WAV
it writes back as int16 chunks while it is still speaking.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import struct
import time
from collections.abc import AsyncIterator

import numpy as np

from server.engines.base import EngineUnavailable

log = logging.getLogger("hark.engines")

_CHUNK_BYTES = 8820  # 200 ms of 22.05 kHz int16 mono


class WavFormatError(RuntimeError):
    """espeak-ng wrote something other than the 16-bit mono WAV Hark expects."""


ESPEAK_WPM = 175  # espeak-ng's default rate


class EspeakTTS:
    name = "espeak"

    def __init__(self, voice: str = "en-us") -> None:
        self.voice = voice
        self.sample_rate = 22050  # espeak-ng's rate; load() confirms it from a real WAV
        self._binary: str | None = None

    async def load(self) -> None:
        if self._binary is not None:
            return
        binary = shutil.which("espeak-ng")
        if binary is None:
            raise EngineUnavailable("espeak-ng is not on PATH: apt-get install espeak-ng")
        started = time.perf_counter()
        try:
            proc, rate = await self._start(binary, "Hello.")
            await proc.communicate()
        except (WavFormatError, OSError) as exc:
            raise EngineUnavailable(f"espeak-ng -v {self.voice} does not work: {exc}") from exc
        self.sample_rate = rate
        self._binary = binary
        log.info("espeak-ng voice %s ready in %.2f s", self.voice, time.perf_counter() - started)

    async def synthesize(
        self, text: str, voice: str | None = None, speed: float = 1.0
    ) -> AsyncIterator[np.ndarray]:
        """Speak `text` with the configured espeak voice; `voice` (OpenAI's) is ignored,
        `speed` scales espeak's rate (175 words a minute at 1)."""
        if self._binary is None:
            raise RuntimeError("EspeakTTS.load() must finish before synthesize()")
        if not text.strip():
            return
        proc, rate = await self._start(self._binary, text, speed)
        try:
            if rate != self.sample_rate:
                raise WavFormatError(f"espeak-ng switched to {rate} Hz from {self.sample_rate}")
            assert proc.stdout is not None
            carry = b""
            while block := await proc.stdout.read(_CHUNK_BYTES):
                block = carry + block
                usable = len(block) - len(block) % 2
                carry = block[usable:]
                if usable:
                    yield np.frombuffer(block[:usable], dtype="<i2").astype(np.int16)
            await proc.wait()
        finally:
            if proc.returncode is None:  # closed early: stop speaking now
                proc.kill()
                await proc.wait()

    async def _start(
        self, binary: str, text: str, speed: float = 1.0
    ) -> tuple[asyncio.subprocess.Process, int]:
        """Start espeak-ng on `text`; return it once its WAV header is read, with the rate."""
        proc = await asyncio.create_subprocess_exec(
            binary,
            "--stdout",
            "-v",
            self.voice,
            "-s",
            str(round(ESPEAK_WPM * speed)),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        proc.stdin.write(text.encode("utf-8"))
        proc.stdin.close()  # flushed in the background while we read stdout
        try:
            return proc, await read_wav_header(proc.stdout)
        except (WavFormatError, asyncio.IncompleteReadError) as exc:
            if proc.returncode is None:
                proc.kill()
            await proc.wait()
            error = (await proc.stderr.read()).decode(errors="replace").strip()
            raise WavFormatError(error or str(exc)) from exc


async def read_wav_header(stream: asyncio.StreamReader) -> int:
    """Consume a RIFF/WAVE header up to the audio data; return the sample rate.

    A streamed WAV's sizes are placeholders (the length is unknown when it starts), so
    only the format is trusted and the data runs to the end of the stream.
    """
    riff = await stream.readexactly(12)
    if riff[:4] != b"RIFF" or riff[8:] != b"WAVE":
        raise WavFormatError("not a WAV stream")
    rate: int | None = None
    while True:
        chunk_id, size = struct.unpack("<4sI", await stream.readexactly(8))
        if chunk_id == b"data":
            if rate is None:
                raise WavFormatError("WAV data before its format")
            return rate
        body = await stream.readexactly(size + size % 2)
        if chunk_id == b"fmt ":
            encoding, channels, rate, _, _, bits = struct.unpack("<HHIIHH", body[:16])
            if (encoding, channels, bits) != (1, 1, 16):
                raise WavFormatError(f"WAV is not 16-bit mono PCM: {encoding=} {channels=} {bits=}")
