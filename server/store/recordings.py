"""Call recordings: off unless the server allows them (`HARK_RECORDING=1`) and the call
asks (`session.recording: true`); files under `HARK_DATA_DIR/recordings/`, indexed in
the database per tenant, erased after `HARK_RECORDING_RETENTION_DAYS` by a sweeper, or
when the tenant deletes the recording or its conversation.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from server.errors import InvalidInput, NotFound
from server.protocol.conversation import new_id
from server.store.conversations import Page, check_limit
from server.store.database import Database, Row
from server.store.recorder import CallRecorder
from server.store.writer import HistoryWriter

log = logging.getLogger("hark.recording")

RECORDING_ID = re.compile(r"rec_[0-9a-f]{20}")
DAY_S = 86_400
SWEEP_INTERVAL_S = 3600.0
FORMAT = "audio/ogg; codecs=opus"


@dataclass(frozen=True)
class RecordingRecord:
    id: str
    tenant: str
    conversation_id: str | None
    call_id: str
    path: str
    status: str
    created_at: float
    duration_ms: int
    bytes: int
    timeline: list[dict[str, Any]]

    def to_dict(self, retention_days: float) -> dict[str, Any]:
        expires = self.created_at + retention_days * DAY_S if retention_days > 0 else None
        return {
            "id": self.id,
            "object": "hark.recording",
            "conversation_id": self.conversation_id,
            "call_id": self.call_id,
            "created_at": int(self.created_at),
            "expires_at": int(expires) if expires is not None else None,
            "status": self.status,
            "duration_ms": self.duration_ms,
            "bytes": self.bytes,
            "format": FORMAT,
            "channels": ["caller", "assistant"],
            "transcript": self.timeline,
        }


def _record(row: Row) -> RecordingRecord:
    return RecordingRecord(
        id=row["id"],
        tenant=row["tenant"],
        conversation_id=row["conversation_id"],
        call_id=row["call_id"],
        path=row["path"],
        status=row["status"],
        created_at=float(row["created_at"]),
        duration_ms=int(row["duration_ms"]),
        bytes=int(row["bytes"]),
        timeline=json.loads(row["timeline"]),
    )


def _erase(paths: list[str]) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


class RecordingStore:
    def __init__(
        self, db: Database, writer: HistoryWriter, directory: Path, retention_days: float
    ) -> None:
        self.db = db
        self.writer = writer
        self.directory = Path(directory)
        self.retention_days = retention_days
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="hark-recording")
        self._sweeper: asyncio.Task[None] | None = None
        self.recorders: dict[str, CallRecorder] = {}

    def start(self, tenant: str, conversation_id: str, call_id: str) -> CallRecorder:
        recording_id = new_id("rec")
        recorder = CallRecorder(
            recording_id,
            self.directory / f"{recording_id}.ogg",
            self.writer,
            self._executor,
            tenant=tenant,
            conversation_id=conversation_id,
            call_id=call_id,
        )
        self.recorders[recording_id] = recorder
        recorder.on_finished = lambda: self.recorders.pop(recording_id, None)
        return recorder

    async def stop_conversation(self, conversation_id: str) -> None:
        for recorder in list(self.recorders.values()):
            if recorder.conversation_id == conversation_id:
                recorder.close()
                await recorder.wait_closed()
        await self.writer.flush()

    async def erase_files(self, paths: list[str]) -> None:
        if paths:
            await asyncio.get_running_loop().run_in_executor(self._executor, _erase, paths)

    # ---- the tenant's view ---------------------------------------------------------------

    async def get(self, tenant: str, recording_id: str) -> RecordingRecord:
        if not RECORDING_ID.fullmatch(recording_id):
            raise NotFound("recording_not_found", f"No recording with id '{recording_id[:64]}'")
        row = await self.db.fetchone("SELECT * FROM recordings WHERE id = ?", (recording_id,))
        if row is None or row["tenant"] != tenant:
            raise NotFound("recording_not_found", f"No recording with id '{recording_id}'")
        return _record(row)

    async def list(
        self,
        tenant: str,
        *,
        limit: Any = None,
        after: str | None = None,
        conversation_id: str | None = None,
    ) -> Page:
        limit = check_limit(limit)
        where, params = ["tenant = ?"], [tenant]
        if conversation_id is not None:
            where.append("conversation_id = ?")
            params.append(conversation_id)
        if after is not None:
            if not RECORDING_ID.fullmatch(after):
                raise InvalidInput("invalid_cursor", "after must be a recording id", param="after")
            cursor = await self.db.fetchone(
                "SELECT created_at FROM recordings WHERE id = ? AND tenant = ?", (after, tenant)
            )
            if cursor is None:
                raise NotFound(
                    "recording_not_found", f"after: no recording '{after}'", param="after"
                )
            where.append("(created_at < ? OR (created_at = ? AND id < ?))")
            params += [cursor["created_at"], cursor["created_at"], after]
        rows = await self.db.fetch(
            f"SELECT * FROM recordings WHERE {' AND '.join(where)}"
            " ORDER BY created_at DESC, id DESC LIMIT ?",
            (*params, limit + 1),
        )
        return Page([_record(r) for r in rows[:limit]], len(rows) > limit)

    async def delete(self, tenant: str, recording_id: str) -> None:
        record = await self.get(tenant, recording_id)
        recorder = self.recorders.get(recording_id)
        if recorder is not None and not recorder.closed:
            recorder.close()  # a live call's recording: stop it first
        if recorder is not None:
            await recorder.wait_closed()
        await self.writer.flush()
        await self.db.execute("DELETE FROM recordings WHERE id = ?", (recording_id,))
        await self.erase_files([record.path])

    # ---- retention -----------------------------------------------------------------------

    async def sweep(self, now: float | None = None) -> int:
        """Erase recordings older than the retention; returns how many."""
        if self.retention_days <= 0:
            return 0
        cutoff = (now if now is not None else time.time()) - self.retention_days * DAY_S
        rows = await self.db.fetch(
            "SELECT id, path FROM recordings WHERE created_at < ?", (cutoff,)
        )
        if not rows:
            return 0
        await self.db.transaction(
            [("DELETE FROM recordings WHERE id = ?", (row["id"],)) for row in rows]
        )
        await self.erase_files([row["path"] for row in rows])
        log.info("recordings: %d past %g days erased", len(rows), self.retention_days)
        return len(rows)

    def start_sweeper(self, interval_s: float = SWEEP_INTERVAL_S) -> None:
        async def run() -> None:
            while True:
                try:
                    await self.sweep()
                except Exception:
                    log.exception("recording sweep failed")
                await asyncio.sleep(interval_s)

        if self._sweeper is None:
            self._sweeper = asyncio.create_task(run(), name="recording-sweeper")

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        for recorder in list(self.recorders.values()):
            recorder.close()
            with contextlib.suppress(Exception):
                await recorder.wait_closed()
        await self.writer.flush()
        self._executor.shutdown(wait=True)
