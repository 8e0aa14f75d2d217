"""One call's recording: both voices in a stereo Ogg Opus file, with the transcript's
timings beside it.

On the event loop it only appends frames to a list (the caller's 16 kHz frames placed by
their position in the caller's stream, the assistant's 48 kHz frames by when they were
sent, both on one clock from the call's first audio). Once a second the list is handed
to a worker thread, which places the pieces on the timeline, mixes them into stereo and
encodes whatever is older than a short margin (late frames still land). Closing encodes
the rest, closes the file and records its length and timeline through the writer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from media.ogg_opus import RATE, OggOpusWriter, upsample_16k_to_48k
from server.protocol.item_shapes import item_text
from server.store.writer import HistoryWriter

log = logging.getLogger("hark.recording")

FLUSH_S = 1.0
MARGIN_S = 0.6  # frames may arrive this late and still be placed
CALLER, ASSISTANT = 0, 1


class _Encoder:
    """The thread side: places pieces on the timeline and encodes what is complete."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.writer: OggOpusWriter | None = None
        self.written = 0  # samples encoded so far
        self.carry: list[tuple[int, int, np.ndarray]] = []

    def encode(self, pieces: list[tuple[int, int, np.ndarray]], horizon: int | None) -> None:
        pieces = self.carry + [
            (ch, start, upsample_16k_to_48k(pcm) if ch == CALLER else pcm)
            for ch, start, pcm in pieces
        ]
        end = max((s + len(p) for _, s, p in pieces), default=self.written)
        horizon = end if horizon is None else min(horizon, end)
        if horizon <= self.written:
            self.carry = pieces
            return
        block = np.zeros((horizon - self.written, 2), np.int32)
        self.carry = []
        for ch, start, pcm in pieces:
            lo, hi = max(start, self.written), min(start + len(pcm), horizon)
            if hi > lo:
                block[lo - self.written : hi - self.written, ch] += pcm[lo - start : hi - start]
            if start + len(pcm) > horizon:
                keep = max(horizon, start)
                self.carry.append((ch, keep, pcm[keep - start :]))
        if self.writer is None:
            self.writer = OggOpusWriter(self.path)
        self.writer.write(np.clip(block, -32768, 32767).astype(np.int16))
        self.written = horizon

    def finish(self) -> tuple[int, int]:
        """Closes the file; (duration in ms, bytes)."""
        if self.writer is None:
            return 0, 0
        self.writer.close()
        return self.written * 1000 // RATE, self.path.stat().st_size


class CallRecorder:
    def __init__(
        self,
        recording_id: str,
        path: Path,
        writer: HistoryWriter,
        executor: ThreadPoolExecutor,
        *,
        tenant: str,
        conversation_id: str,
        call_id: str,
    ) -> None:
        self.id = recording_id
        self.path = path
        self.tenant = tenant
        self.conversation_id = conversation_id
        self.call_id = call_id
        self._writer = writer
        self._executor = executor
        self._encoder = _Encoder(path)
        self._pieces: list[tuple[int, int, np.ndarray]] = []
        self._t0: float | None = None
        self._caller_offset_s: float | None = None
        self._timeline: dict[str, dict[str, Any]] = {}
        self._task: asyncio.Task[None] | None = None
        self._closing: asyncio.Task[None] | None = None
        self._pending: asyncio.Future[None] | None = None
        self.closed = False
        self.on_finished: Any = None

    # ---- the event loop side: append only ------------------------------------------------

    def begin(self) -> None:
        self._writer.put(
            [
                (
                    "INSERT INTO recordings (id, tenant, conversation_id, call_id, path, status,"
                    " created_at, duration_ms, bytes, timeline) VALUES (?, ?, ?, ?, ?, ?, ?, ?,"
                    " ?, ?)",
                    (
                        self.id,
                        self.tenant,
                        self.conversation_id,
                        self.call_id,
                        str(self.path),
                        "recording",
                        time.time(),
                        0,
                        0,
                        "[]",
                    ),
                )
            ]
        )
        self._task = asyncio.create_task(self._flush_every_second(), name=f"record-{self.id}")

    def _now(self) -> float:
        now = time.monotonic()
        if self._t0 is None:
            self._t0 = now
        return now - self._t0

    def caller_audio(self, frame: np.ndarray, audio_end_ms: int) -> None:
        if self.closed:
            return
        at = self._now()
        if self._caller_offset_s is None:
            self._caller_offset_s = at - audio_end_ms / 1000
        start_s = self._caller_offset_s + audio_end_ms / 1000 - len(frame) / 16_000
        self._pieces.append((CALLER, max(0, round(start_s * RATE)), frame.copy()))

    def assistant_audio(self, frame: np.ndarray, sent_at: float) -> None:
        if self.closed:
            return
        self._now()
        if not frame.any():
            return  # silence between replies: the timeline is zeros anyway
        assert self._t0 is not None
        start = max(0, round((sent_at - self._t0) * RATE))
        self._pieces.append((ASSISTANT, start, frame.copy()))

    def _entry(self, item_id: str, role: str) -> dict[str, Any]:
        return self._timeline.setdefault(
            item_id, {"item_id": item_id, "role": role, "start_ms": None, "end_ms": None}
        )

    def user_turn(self, item_id: str, start_ms: int, end_ms: int) -> None:
        offset = self._caller_offset_s or 0.0
        entry = self._entry(item_id, "user")
        entry["start_ms"] = max(0, round(offset * 1000 + start_ms))
        entry["end_ms"] = max(0, round(offset * 1000 + end_ms))

    def assistant_turn(self, item_id: str, *, playing: bool) -> None:
        entry = self._entry(item_id, "assistant")
        entry["start_ms" if playing else "end_ms"] = round(self._now() * 1000)

    def item_done(self, item: dict[str, Any]) -> None:
        role = str(item.get("role") or item.get("type"))
        entry = self._entry(str(item.get("id")), role)
        entry["text"] = item_text(item)
        if role == "assistant" and entry["start_ms"] is not None and entry["end_ms"] is None:
            entry["end_ms"] = round(self._now() * 1000)  # cut off by a barge-in

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._task is not None:
            self._task.cancel()
        self._closing = asyncio.create_task(self._finish(), name=f"record-{self.id}-close")

    async def wait_closed(self) -> None:
        if self._closing is not None:
            await asyncio.shield(self._closing)

    # ---- handing work to the thread ----------------------------------------------------

    async def _submit(self, horizon: int | None) -> None:
        pieces, self._pieces = self._pieces, []
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._encoder.encode, pieces, horizon)

    async def _flush_every_second(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_S)
            if self._t0 is None:
                continue
            horizon = round((self._now() - MARGIN_S) * RATE)
            try:
                await self._submit(horizon)
            except Exception:
                log.exception("recording %s: encoding failed", self.id)

    async def _finish(self) -> None:
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        duration_ms, size = 0, 0
        try:
            await self._submit(None)
            loop = asyncio.get_running_loop()
            duration_ms, size = await loop.run_in_executor(self._executor, self._encoder.finish)
        except Exception:
            log.exception("recording %s: closing failed", self.id)
        timeline = sorted(
            (e for e in self._timeline.values() if e.get("start_ms") is not None),
            key=lambda e: e["start_ms"],
        )
        self._writer.put(
            [
                (
                    "UPDATE recordings SET status = ?, duration_ms = ?, bytes = ?, timeline = ?"
                    " WHERE id = ?",
                    ("complete", duration_ms, size, json.dumps(timeline), self.id),
                )
            ]
        )
        if self.on_finished is not None:
            self.on_finished()
