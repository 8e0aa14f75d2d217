"""Versioned schema migrations, the same numbered steps for SQLite and PostgreSQL.

`schema_version` holds one row per applied step. At start-up every step newer than the
database's version runs, each in its own transaction with its version row, so a crash
mid-migration leaves the database at the last whole step. A database newer than this
Hark (written by a later release) is refused rather than misread. Steps are only ever
appended: never edit one that has shipped.

Column types that differ (`{real}`, `{blob}`, `{bigint}`) are filled in per database.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from server.store.database import Database, DatabaseError

log = logging.getLogger("hark.store")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "conversations, items and calls",
        (
            """CREATE TABLE conversations (
                id TEXT PRIMARY KEY,
                tenant TEXT NOT NULL,
                user_id TEXT,
                persona TEXT,
                metadata TEXT NOT NULL,
                created_at {real} NOT NULL,
                updated_at {real} NOT NULL,
                summary TEXT,
                summary_through {bigint}
            )""",
            "CREATE INDEX conversations_by_tenant ON conversations (tenant, created_at, id)",
            "CREATE INDEX conversations_by_time ON conversations (created_at, id)",
            """CREATE TABLE items (
                conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
                id TEXT NOT NULL,
                seq {bigint} NOT NULL,
                type TEXT NOT NULL,
                role TEXT,
                data TEXT NOT NULL,
                call_id TEXT,
                created_at {real} NOT NULL,
                PRIMARY KEY (conversation_id, id)
            )""",
            "CREATE INDEX items_in_order ON items (conversation_id, seq)",
            """CREATE TABLE calls (
                id TEXT PRIMARY KEY,
                conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
                tenant TEXT NOT NULL,
                started_at {real} NOT NULL,
                ended_at {real},
                end_reason TEXT
            )""",
            "CREATE INDEX calls_by_conversation ON calls (conversation_id)",
        ),
    ),
    Migration(
        2,
        "per-user memory: profile, learning goals, progress notes",
        (
            """CREATE TABLE user_memory (
                tenant TEXT NOT NULL,
                user_id TEXT NOT NULL,
                profile TEXT NOT NULL,
                goals TEXT NOT NULL,
                notes TEXT NOT NULL,
                updated_at {real} NOT NULL,
                PRIMARY KEY (tenant, user_id)
            )""",
        ),
    ),
    Migration(
        3,
        "call recordings",
        (
            """CREATE TABLE recordings (
                id TEXT PRIMARY KEY,
                tenant TEXT NOT NULL,
                conversation_id TEXT REFERENCES conversations (id) ON DELETE CASCADE,
                call_id TEXT NOT NULL,
                path TEXT NOT NULL,
                status TEXT NOT NULL,
                created_at {real} NOT NULL,
                duration_ms {bigint} NOT NULL,
                bytes {bigint} NOT NULL,
                timeline TEXT NOT NULL
            )""",
            "CREATE INDEX recordings_by_tenant ON recordings (tenant, created_at, id)",
            "CREATE INDEX recordings_by_time ON recordings (created_at)",
        ),
    ),
    Migration(
        4,
        "voice profiles",
        (
            """CREATE TABLE voices (
                id TEXT PRIMARY KEY,
                tenant TEXT NOT NULL,
                name TEXT NOT NULL,
                created_at {real} NOT NULL,
                duration_ms {bigint} NOT NULL,
                sample_rate {bigint} NOT NULL,
                transcript TEXT NOT NULL,
                audio {blob} NOT NULL
            )""",
            "CREATE INDEX voices_by_tenant ON voices (tenant, created_at)",
        ),
    ),
)

LATEST = MIGRATIONS[-1].version


async def schema_version(db: Database) -> int:
    row = await db.fetchone("SELECT MAX(version) AS version FROM schema_version")
    return int(row["version"] or 0) if row else 0


async def migrate(db: Database, migrations: tuple[Migration, ...] = MIGRATIONS) -> int:
    """Bring `db` up to the newest step; returns the version it is at."""
    await db.execute(
        f"CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, "
        f"name TEXT NOT NULL, applied_at {db.types['real']} NOT NULL)"
    )
    latest = migrations[-1].version if migrations else 0
    current = await schema_version(db)
    if current > latest:
        raise DatabaseError(
            f"the {db.name} database is at schema version {current}, newer than this Hark "
            f"knows ({latest}); upgrade Hark or point it at another database"
        )
    for step in migrations:
        if step.version <= current:
            continue
        lock = db.types["lock"]
        statements = [(lock, ())] if lock else []
        check = "SELECT version FROM schema_version WHERE version = ?"
        body = [(sql.format(**db.types), ()) for sql in step.statements]
        record = (
            "INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)",
            (step.version, step.name, time.time()),
        )
        try:
            await db.transaction([*statements, *body, record])
        except Exception as exc:
            if await db.fetchone(check, (step.version,)) is not None:
                continue  # a concurrent node applied it first
            raise DatabaseError(
                f"schema migration {step.version} ({step.name}) failed on {db.name}: {exc}"
            ) from exc
        log.info("database: applied migration %d (%s)", step.version, step.name)
    return await schema_version(db)
