"""Voice profiles: a tenant's reference clips (mono 24 kHz, normalized) with their
transcripts, kept in the database so every node serving the tenant has them.

A cloning TTS asks `resolve(tenant, voice_id)` for exactly what it speaks with: mono PCM,
its sample rate and the words it says (the fields of the F5 engine's `VoiceReference`
contract in server/engines/voices.py).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from server.engines.voices import VoiceReference
from server.errors import InvalidInput, NotFound
from server.protocol.conversation import new_id
from server.store.database import Database, Row

VOICE_ID = re.compile(r"voice_[0-9a-f]{20}")
MAX_NAME_CHARS = 64
MAX_TRANSCRIPT_CHARS = 1000
MAX_VOICES_PER_TENANT = 100


@dataclass(frozen=True)
class VoiceRecord:
    id: str
    tenant: str
    name: str
    created_at: float
    duration_ms: int
    sample_rate: int
    transcript: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "voice",
            "name": self.name,
            "created_at": int(self.created_at),
            "duration_ms": self.duration_ms,
            "transcript": self.transcript,
            "built_in": False,
        }


def built_in_voice(name: str, language: str | None = None) -> dict[str, Any]:
    """An engine's own voice; `language` (ISO 639-1) is what it speaks."""
    return {
        "id": name,
        "object": "voice",
        "name": name,
        "created_at": None,
        "duration_ms": None,
        "built_in": True,
        "language": language,
    }


def check_name(raw: Any) -> str:
    if not isinstance(raw, str) or not 0 < len(raw.strip()) <= MAX_NAME_CHARS:
        raise InvalidInput(
            "invalid_voice_name", f"name must be 1-{MAX_NAME_CHARS} characters", param="name"
        )
    return raw.strip()


def _record(row: Row) -> VoiceRecord:
    return VoiceRecord(
        id=row["id"],
        tenant=row["tenant"],
        name=row["name"],
        created_at=float(row["created_at"]),
        duration_ms=int(row["duration_ms"]),
        sample_rate=int(row["sample_rate"]),
        transcript=row["transcript"],
    )


_COLUMNS = "id, tenant, name, created_at, duration_ms, sample_rate, transcript"


class VoiceStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(
        self, tenant: str, name: str, pcm: np.ndarray, sample_rate: int, transcript: str
    ) -> VoiceRecord:
        transcript = transcript.strip()
        if not transcript:
            raise InvalidInput(
                "invalid_voice_text", "The transcript of the reference is empty", param="text"
            )
        if len(transcript) > MAX_TRANSCRIPT_CHARS:
            raise InvalidInput(
                "invalid_voice_text",
                f"text must be at most {MAX_TRANSCRIPT_CHARS} characters",
                param="text",
            )
        count = await self.db.fetchone(
            "SELECT COUNT(*) AS n FROM voices WHERE tenant = ?", (tenant,)
        )
        if count is not None and int(count["n"]) >= MAX_VOICES_PER_TENANT:
            raise InvalidInput(
                "too_many_voices",
                f"A tenant keeps at most {MAX_VOICES_PER_TENANT} voices; delete one first",
            )
        record = VoiceRecord(
            id=new_id("voice"),
            tenant=tenant,
            name=name,
            created_at=time.time(),
            duration_ms=len(pcm) * 1000 // sample_rate,
            sample_rate=sample_rate,
            transcript=transcript,
        )
        await self.db.execute(
            f"INSERT INTO voices ({_COLUMNS}, audio) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                record.id,
                tenant,
                name,
                record.created_at,
                record.duration_ms,
                sample_rate,
                transcript,
                pcm.astype("<i2").tobytes(),
            ),
        )
        return record

    async def list(self, tenant: str) -> list[VoiceRecord]:
        rows = await self.db.fetch(
            f"SELECT {_COLUMNS} FROM voices WHERE tenant = ? ORDER BY created_at, id", (tenant,)
        )
        return [_record(row) for row in rows]

    async def get(self, tenant: str, voice_id: str) -> VoiceRecord:
        row = None
        if VOICE_ID.fullmatch(voice_id):
            row = await self.db.fetchone(
                f"SELECT {_COLUMNS} FROM voices WHERE id = ? AND tenant = ?", (voice_id, tenant)
            )
        if row is None:
            raise NotFound("voice_not_found", f"No voice with id '{voice_id[:64]}'")
        return _record(row)

    async def delete(self, tenant: str, voice_id: str) -> None:
        await self.get(tenant, voice_id)
        await self.db.execute("DELETE FROM voices WHERE id = ? AND tenant = ?", (voice_id, tenant))

    async def resolve(self, tenant: str, voice_id: str) -> VoiceReference | None:
        """The reference a cloning TTS speaks with, or None if the tenant has no such voice."""
        if not VOICE_ID.fullmatch(voice_id):
            return None
        row = await self.db.fetchone(
            "SELECT name, sample_rate, transcript, audio FROM voices WHERE id = ? AND tenant = ?",
            (voice_id, tenant),
        )
        if row is None:
            return None
        pcm = np.frombuffer(bytes(row["audio"]), dtype="<i2").astype(np.int16)
        return VoiceReference(pcm, int(row["sample_rate"]), row["transcript"], row["name"])
