"""The durable store on real databases: a SQLite file and a PostgreSQL server started for
the tests. Migrations, conversations per tenant, pagination, bad input, the batched
writer, and what survives closing and reopening."""

from __future__ import annotations

import sqlite3

import pytest

from server.errors import InvalidInput, NotFound
from server.store.conversations import ConversationStore, upsert_item_statement
from server.store.database import DatabaseError, SqliteDatabase
from server.store.schema import LATEST, MIGRATIONS, migrate, schema_version
from server.store.writer import HistoryWriter
from tests.store_fixtures import fresh_database

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def pg(backend: str, request: pytest.FixtureRequest) -> str | None:
    return request.getfixturevalue("postgres_url") if backend == "postgresql" else None


def message(text: str, role: str = "user", item_id: str | None = None) -> dict:
    kind = "input_text" if role == "user" else "output_text"
    item = {"type": "message", "role": role, "content": [{"type": kind, "text": text}]}
    if item_id:
        item["id"] = item_id
    return item


async def test_migrations_run_once_in_order_and_upgrade_an_old_database(backend, pg, tmp_path):
    async with fresh_database(backend, tmp_path, pg, migrated=False) as db:
        assert await migrate(db, MIGRATIONS[:1]) == 1
        # Version 1 has conversations but no voices yet.
        await db.fetch("SELECT id FROM conversations")
        with pytest.raises(Exception):  # noqa: B017 - either driver's "no such table"
            await db.fetch("SELECT id FROM voices")
        assert await migrate(db) == LATEST
        assert await migrate(db) == LATEST  # idempotent
        rows = await db.fetch("SELECT version FROM schema_version ORDER BY version")
        assert [r["version"] for r in rows] == [m.version for m in MIGRATIONS]
        await db.fetch("SELECT id FROM voices")
        # A database written by a newer Hark is refused, not misread.
        await db.execute(
            "INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)",
            (LATEST + 1, "from the future", 0.0),
        )
        with pytest.raises(DatabaseError, match="newer than this Hark"):
            await migrate(db)
        assert await schema_version(db) == LATEST + 1


async def test_sqlite_is_a_wal_file_under_the_data_dir(tmp_path):
    db = await SqliteDatabase.open(tmp_path / "sub" / "hark.db")
    await migrate(db)
    await db.close()
    conn = sqlite3.connect(tmp_path / "sub" / "hark.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


async def test_conversations_belong_to_their_tenant(backend, pg, tmp_path):
    async with fresh_database(backend, tmp_path, pg) as db:
        store = ConversationStore(db)
        made = await store.create(
            "key:a",
            user="alice",
            metadata={"topic": "travel"},
            items=[message("Hi"), {"role": "assistant", "content": "Hello!"}],
        )
        got = await store.get("key:a", made.id)
        assert got.metadata == {"topic": "travel"} and got.user == "alice" and got.items == 2
        shape = got.to_dict()
        assert shape["object"] == "conversation" and isinstance(shape["created_at"], int)
        with pytest.raises(NotFound):
            await store.get("key:b", made.id)
        with pytest.raises(NotFound):
            await store.items("key:b", made.id)
        with pytest.raises(NotFound):
            await store.delete("key:b", made.id)
        assert (await store.get(None, made.id)).tenant == "key:a"  # the operator's view
        assert [c.id for c in (await store.list("key:b")).data] == []
        page = await store.items("key:a", made.id, order="asc")
        assert [i["role"] for i in page.data] == ["user", "assistant"]
        assert page.data[1]["content"] == [{"type": "output_text", "text": "Hello!"}]
        assert all(i["object"] == "realtime.item" and i["id"] for i in page.data)


async def test_listing_is_newest_first_with_a_cursor(backend, pg, tmp_path):
    async with fresh_database(backend, tmp_path, pg) as db:
        store = ConversationStore(db)
        made = [(await store.create("key:a")).id for _ in range(25)]
        await store.create("key:other")
        first = await store.list("key:a", limit=10)
        assert first.has_more and [c.id for c in first.data] == made[::-1][:10]
        second = await store.list("key:a", limit=10, after=first.data[-1].id)
        third = await store.list("key:a", limit=10, after=second.data[-1].id)
        seen = [c.id for page in (first, second, third) for c in page.data]
        assert seen == made[::-1] and not third.has_more
        assert len((await store.list(None, limit=100)).data) == 26
        for bad in ("nope", "conv_zz", "'; DROP TABLE items; --"):
            with pytest.raises(InvalidInput) as raised:
                await store.list("key:a", after=bad)
            assert raised.value.param == "after"
        # Well formed but unknown (or another tenant's): not found.
        other = (await store.list("key:other")).data[0].id
        for unknown in ("conv_" + "0" * 20, other):
            with pytest.raises(NotFound):
                await store.list("key:a", after=unknown)
        for limit in (0, 101, "x", -3):
            with pytest.raises(InvalidInput):
                await store.list("key:a", limit=limit)


async def test_bad_metadata_and_items_are_refused(backend, pg, tmp_path):
    async with fresh_database(backend, tmp_path, pg) as db:
        store = ConversationStore(db)
        for metadata in (
            {f"k{i}": "v" for i in range(17)},
            {"k" * 65: "v"},
            {"k": "v" * 513},
            {"k": 3},
            ["not", "an", "object"],
        ):
            with pytest.raises(InvalidInput, match="metadata"):
                await store.create("key:a", metadata=metadata)
        for items in (
            [{"type": "message", "role": "wizard", "content": "x"}],
            [{"type": "message", "role": "user", "content": []}],
            [{"type": "message", "role": "user", "content": [{"type": "input_image"}]}],
            [{"type": "function_call", "name": "f"}],
            [{"type": "reasoning"}],
            [message("x")] * 21,
            "not a list",
        ):
            with pytest.raises(InvalidInput):
                await store.create("key:a", items=items)  # type: ignore[arg-type]
        assert (await store.list("key:a")).data == []


async def test_items_page_both_ways_and_tool_items_keep_their_shape(backend, pg, tmp_path):
    async with fresh_database(backend, tmp_path, pg) as db:
        store = ConversationStore(db)
        conv = await store.create("key:a")
        items = [message(f"turn {n}", item_id=f"item_{n}") for n in range(5)]
        items.append(
            {"type": "function_call", "call_id": "call_1", "name": "weather", "arguments": "{}"}
        )
        items.append({"type": "function_call_output", "call_id": "call_1", "output": "sunny"})
        await store.add_items("key:a", conv.id, items)
        newest = await store.items("key:a", conv.id, limit=3)
        assert [i["type"] for i in newest.data] == [
            "function_call_output",
            "function_call",
            "message",
        ]
        assert newest.has_more
        older = await store.items("key:a", conv.id, limit=3, after=newest.data[-1]["id"])
        assert [i["id"] for i in older.data] == ["item_3", "item_2", "item_1"]
        ascending = await store.items("key:a", conv.id, order="asc", after="item_2")
        assert [i["id"] for i in ascending.data][:2] == ["item_3", "item_4"]
        assert ascending.data[-1]["output"] == "sunny"
        with pytest.raises(NotFound):
            await store.items("key:a", conv.id, after="item_missing")
        with pytest.raises(InvalidInput):
            await store.items("key:a", conv.id, after="bad cursor!")
        with pytest.raises(InvalidInput):
            await store.items("key:a", conv.id, order="sideways")
        with pytest.raises(NotFound):
            await store.item("key:a", conv.id, "item_missing")
        assert (await store.item("key:a", conv.id, "item_4"))["content"][0]["text"] == "turn 4"
        await store.delete("key:a", conv.id)
        with pytest.raises(NotFound):
            await store.get("key:a", conv.id)
        assert await db.fetch("SELECT id FROM items") == []


async def test_the_writer_batches_keeps_order_and_replaces_in_place(backend, pg, tmp_path):
    async with fresh_database(backend, tmp_path, pg) as db:
        store = ConversationStore(db)
        conv = await store.create("key:a")
        writer = HistoryWriter(db)
        writer.start()
        for n in range(300):
            writer.put([upsert_item_statement(conv.id, message(f"m{n}", item_id=f"i{n}"), None, n)])
        # Item i5 is truncated after it was stored: same place, new words.
        writer.put([upsert_item_statement(conv.id, message("cut", item_id="i5"), None, 999)])
        # One statement failing (its conversation is gone) loses nothing else.
        writer.put(
            [upsert_item_statement("conv_" + "f" * 20, message("lost", item_id="x"), None, 0)]
        )
        writer.put([upsert_item_statement(conv.id, message("last", item_id="last"), None, 1)])
        await writer.flush()
        assert writer.failed == 1 and writer.dropped == 0
        assert len(writer.batch_seconds) < 300  # batched
        page = await store.items("key:a", conv.id, order="asc", limit=100)
        assert page.data[5]["content"][0]["text"] == "cut"
        history = await store.history(conv.id)
        assert [item["id"] for _, item in history][-1] == "last"
        assert [seq for seq, _ in history] == sorted(seq for seq, _ in history)
        assert len(history) == 301
        await writer.close()


async def test_a_full_queue_drops_and_counts_instead_of_blocking(tmp_path):
    db = await SqliteDatabase.open(tmp_path / "hark.db")
    await migrate(db)
    writer = HistoryWriter(db, max_queue=3)  # not started: nothing drains it
    results = [writer.put([("SELECT 1", ())]) for _ in range(5)]
    assert results == [True, True, True, False, False] and writer.dropped == 2
    await db.close()


async def test_what_was_written_is_there_after_reopening(tmp_path):
    db = await SqliteDatabase.open(tmp_path / "hark.db")
    await migrate(db)
    conv = await ConversationStore(db).create("key:a", items=[message("remember me")])
    await db.close()
    again = await SqliteDatabase.open(tmp_path / "hark.db")
    page = await ConversationStore(again).items("key:a", conv.id)
    assert page.data[0]["content"][0]["text"] == "remember me"
    await again.close()
