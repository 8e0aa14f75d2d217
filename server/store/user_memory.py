"""What Hark keeps about each user (a tenant's `sub`) across calls: a profile, learning
goals and progress notes, which persona templates put into the instructions."""

from __future__ import annotations

import json
import time
from typing import Any

from server.errors import InvalidInput
from server.persona.persona import UserMemory
from server.store.conversations import check_metadata
from server.store.database import Database

MAX_NOTES_CHARS = 4000


def check_user_memory(raw: Any) -> UserMemory:
    """A user's memory from a request body; raises InvalidInput naming the field."""
    if not isinstance(raw, dict):
        raise InvalidInput("invalid_memory", "The body must be a JSON object")
    unknown = set(raw) - {"profile", "goals", "notes"}
    if unknown:
        raise InvalidInput(
            "invalid_memory", f"Unknown field '{sorted(unknown)[0][:64]}'", param="body"
        )
    profile = check_metadata(raw.get("profile"), "profile")
    texts = {}
    for key in ("goals", "notes"):
        value = raw.get(key, "")
        if not isinstance(value, str) or len(value) > MAX_NOTES_CHARS:
            raise InvalidInput(
                "invalid_memory",
                f"{key} must be a string of at most {MAX_NOTES_CHARS} characters",
                param=key,
            )
        texts[key] = value.strip()
    return UserMemory(profile=profile, goals=texts["goals"], notes=texts["notes"])


class UserMemoryStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(self, tenant: str, user: str) -> UserMemory:
        row = await self.db.fetchone(
            "SELECT profile, goals, notes FROM user_memory WHERE tenant = ? AND user_id = ?",
            (tenant, user),
        )
        if row is None:
            return UserMemory()
        return UserMemory(json.loads(row["profile"]), row["goals"], row["notes"])

    async def put(self, tenant: str, user: str, memory: UserMemory) -> None:
        await self.db.execute(
            "INSERT INTO user_memory (tenant, user_id, profile, goals, notes, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (tenant, user_id) DO UPDATE SET "
            "profile = excluded.profile, goals = excluded.goals, notes = excluded.notes, "
            "updated_at = excluded.updated_at",
            (tenant, user, json.dumps(memory.profile), memory.goals, memory.notes, time.time()),
        )

    async def delete(self, tenant: str, user: str) -> bool:
        changed = await self.db.execute(
            "DELETE FROM user_memory WHERE tenant = ? AND user_id = ?", (tenant, user)
        )
        return changed > 0
