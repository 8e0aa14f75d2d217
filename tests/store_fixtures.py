"""Real databases for the store tests: a fresh SQLite file, or a fresh database on the
PostgreSQL server the session started (`postgres_url` in conftest)."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from server.store.database import Database, PostgresDatabase, SqliteDatabase
from server.store.schema import migrate


@asynccontextmanager
async def fresh_database(
    backend: str, tmp_path: Path, postgres_url: str | None, *, migrated: bool = True
) -> AsyncIterator[Database]:
    if backend == "sqlite":
        db: Database = await SqliteDatabase.open(tmp_path / "hark.db")
        try:
            if migrated:
                await migrate(db)
            yield db
        finally:
            await db.close()
        return
    assert postgres_url is not None
    import asyncpg

    name = "hark_" + secrets.token_hex(6)
    admin = await asyncpg.connect(postgres_url)
    await admin.execute(f"CREATE DATABASE {name}")
    db = await PostgresDatabase.open(postgres_url.rsplit("/", 1)[0] + f"/{name}")
    try:
        if migrated:
            await migrate(db)
        yield db
    finally:
        await db.close()
        await admin.execute(f"DROP DATABASE {name}")
        await admin.close()
