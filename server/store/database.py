"""The two databases Hark can keep its memory in, behind one small async interface.

SQLite (the default, a file under `HARK_DATA_DIR`) runs in WAL mode on two threads of its
own, one connection each: a writer and a reader, so a slow history page never waits for
a write and nothing touches the event loop. `synchronous=NORMAL` in WAL survives a killed
process (only a power cut can lose the last commits). PostgreSQL (`HARK_DATABASE_URL`)
goes through asyncpg's pool, which is asynchronous already.

Queries are written once with `?` placeholders; the PostgreSQL side numbers them.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol, TypeVar

T = TypeVar("T")
Row = dict[str, Any]
Statement = tuple[str, Sequence[Any]]


class DatabaseError(RuntimeError):
    """The database cannot be opened or used; the message says which and why."""


class Database(Protocol):
    name: str  # "sqlite" or "postgresql"
    # Column types that differ between the two (used by the migrations).
    types: dict[str, str]

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None: ...

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement in its own transaction; returns the rows it changed."""

    async def transaction(self, statements: Sequence[Statement]) -> list[int]:
        """Run statements in one transaction (all or none); rows changed by each."""

    async def close(self) -> None: ...


SQLITE_TYPES = {"real": "REAL", "blob": "BLOB", "bigint": "INTEGER", "lock": ""}
POSTGRES_TYPES = {
    "real": "DOUBLE PRECISION",
    "blob": "BYTEA",
    "bigint": "BIGINT",
    # Nodes starting at once take turns migrating.
    "lock": "SELECT pg_advisory_xact_lock(7251)",
}


class SqliteDatabase:
    name = "sqlite"
    types = SQLITE_TYPES

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="hark-db-write")
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="hark-db-read")
        self._connections: dict[str, sqlite3.Connection] = {}

    @classmethod
    async def open(cls, path: Path) -> SqliteDatabase:
        db = cls(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            await db._run(db._writer, "write", lambda conn: None)
            await db._run(db._reader, "read", lambda conn: None)
        except (OSError, sqlite3.Error) as exc:
            await db.close()
            raise DatabaseError(f"cannot open the SQLite database {path}: {exc}") from exc
        return db

    def _connect(self, role: str) -> sqlite3.Connection:
        conn = self._connections.get(role)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=10, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=10000")
            self._connections[role] = conn
        return conn

    async def _run(
        self, executor: ThreadPoolExecutor, role: str, work: Callable[[sqlite3.Connection], T]
    ) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(executor, lambda: work(self._connect(role)))

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        def work(conn: sqlite3.Connection) -> list[Row]:
            return [dict(row) for row in conn.execute(sql, tuple(params)).fetchall()]

        return await self._run(self._reader, "read", work)

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        rows = await self.fetch(sql, params)
        return rows[0] if rows else None

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return (await self.transaction([(sql, params)]))[0]

    async def transaction(self, statements: Sequence[Statement]) -> list[int]:
        def work(conn: sqlite3.Connection) -> list[int]:
            changed = []
            conn.execute("BEGIN IMMEDIATE")
            try:
                for sql, params in statements:
                    if sql:
                        changed.append(conn.execute(sql, tuple(params)).rowcount)
                    else:
                        changed.append(0)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return changed

        return await self._run(self._writer, "write", work)

    async def close(self) -> None:
        def shut(role: str) -> None:
            conn = self._connections.pop(role, None)
            if conn is not None:
                conn.close()

        loop = asyncio.get_running_loop()
        for executor, role in ((self._writer, "write"), (self._reader, "read")):
            try:
                await loop.run_in_executor(executor, shut, role)
            except RuntimeError:
                pass  # already shut down
            executor.shutdown(wait=False)


_PLACEHOLDER = re.compile(r"\?")


def numbered(sql: str) -> str:
    """`?` placeholders as PostgreSQL's `$1, $2, …` (queries here hold no literal `?`)."""
    counter = iter(range(1, 10_000))
    return _PLACEHOLDER.sub(lambda _: f"${next(counter)}", sql)


class PostgresDatabase:
    name = "postgresql"
    types = POSTGRES_TYPES

    def __init__(self, pool: Any) -> None:
        self._pool = pool

    @classmethod
    async def open(cls, url: str) -> PostgresDatabase:
        import asyncpg

        try:
            pool = await asyncpg.create_pool(url, min_size=1, max_size=8, timeout=10)
        except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
            raise DatabaseError(f"cannot connect to PostgreSQL (HARK_DATABASE_URL): {exc}") from exc
        return cls(pool)

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        async with self._pool.acquire() as conn:
            return [dict(row) for row in await conn.fetch(numbered(sql), *params)]

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        rows = await self.fetch(sql, params)
        return rows[0] if rows else None

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return (await self.transaction([(sql, params)]))[0]

    async def transaction(self, statements: Sequence[Statement]) -> list[int]:
        changed = []
        async with self._pool.acquire() as conn, conn.transaction():
            for sql, params in statements:
                if not sql:
                    changed.append(0)
                    continue
                status = await conn.execute(numbered(sql), *params)
                # "INSERT 0 3", "UPDATE 2", "DELETE 1", "SELECT 1"
                tail = status.rsplit(" ", 1)[-1] if isinstance(status, str) else ""
                changed.append(int(tail) if tail.isdigit() else 0)
        return changed

    async def close(self) -> None:
        await self._pool.close()


async def open_database(url: str, data_dir: Path) -> Database:
    """PostgreSQL when `url` is set (postgres:// or postgresql://), else SQLite in
    `data_dir/hark.db` (the directory is created on first run)."""
    if url:
        if not url.startswith(("postgres://", "postgresql://")):
            raise DatabaseError(
                "HARK_DATABASE_URL must be a postgresql:// URL (leave it empty for SQLite)"
            )
        return await PostgresDatabase.open(url)
    return await SqliteDatabase.open(Path(data_dir) / "hark.db")
