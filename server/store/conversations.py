"""Conversations and their items, per tenant, in OpenAI's Conversations API shapes.

A tenant is the API key accountable for the conversation (`key:<digest>`); every read
and write names the tenant, and another tenant's conversation is simply not found.
`tenant=None` is the operator's view: every tenant, read only.

Items are kept as the Realtime item dicts clients saw, in the order they were finished
(`seq`), so tool items and new kinds need no schema change. Listing is newest first by
creation with an opaque-enough cursor: the id of the last conversation seen.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

from server.errors import InvalidInput, NotFound
from server.protocol.conversation import new_id
from server.protocol.item_shapes import ITEM_ID, normalize_item
from server.store.database import Database, Row, Statement

MAX_METADATA_PAIRS = 16
MAX_METADATA_KEY = 64
MAX_METADATA_VALUE = 512
MAX_ITEMS_PER_REQUEST = 20
DEFAULT_LIMIT = 20
MAX_LIMIT = 100
CONVERSATION_ID = re.compile(r"conv_[0-9a-f]{20}")


@dataclass(frozen=True)
class ConversationRecord:
    id: str
    tenant: str
    user: str | None
    persona: str | None
    metadata: dict[str, str]
    created_at: float
    updated_at: float
    summary: str | None = None
    summary_through: int | None = None
    items: int = 0
    calls: list[str] = field(default_factory=list)

    def to_dict(self, *, operator: bool = False) -> dict[str, Any]:
        """OpenAI's Conversation object, with Hark's own fields under `hark`."""
        hark: dict[str, Any] = {
            "user": self.user,
            "persona": self.persona,
            "updated_at": int(self.updated_at),
            "items": self.items,
            "calls": self.calls,
        }
        if operator:
            hark["tenant"] = self.tenant
        return {
            "id": self.id,
            "object": "conversation",
            "created_at": int(self.created_at),
            "metadata": self.metadata,
            "hark": hark,
        }


@dataclass(frozen=True)
class Page:
    data: list[Any]
    has_more: bool


def check_metadata(raw: Any, param: str = "metadata") -> dict[str, str]:
    """OpenAI's metadata rules: at most 16 pairs, keys ≤ 64 and values ≤ 512 characters."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise InvalidInput("invalid_metadata", f"{param} must be an object", param=param)
    if len(raw) > MAX_METADATA_PAIRS:
        raise InvalidInput(
            "invalid_metadata", f"{param} holds more than {MAX_METADATA_PAIRS} pairs", param=param
        )
    for key, value in raw.items():
        if len(key) > MAX_METADATA_KEY:
            raise InvalidInput(
                "invalid_metadata",
                f"{param} keys must be at most {MAX_METADATA_KEY} characters",
                param=param,
            )
        if not isinstance(value, str) or len(value) > MAX_METADATA_VALUE:
            raise InvalidInput(
                "invalid_metadata",
                f"{param} values must be strings of at most {MAX_METADATA_VALUE} characters",
                param=f"{param}.{key[:MAX_METADATA_KEY]}",
            )
    return dict(raw)


def check_limit(raw: Any) -> int:
    if raw is None:
        return DEFAULT_LIMIT
    try:
        limit = int(raw)
    except (TypeError, ValueError):
        limit = 0
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(
            "invalid_limit", f"limit must be an integer in [1, {MAX_LIMIT}]", param="limit"
        )
    return limit


def check_conversation_id(raw: str, param: str = "conversation_id") -> str:
    if not CONVERSATION_ID.fullmatch(raw):
        raise NotFound(
            "conversation_not_found", f"No conversation with id '{raw[:64]}'", param=param
        )
    return raw


def upsert_item_statement(
    conversation_id: str, item: dict[str, Any], call_id: str | None, at: float
) -> Statement:
    """Insert an item at the end of the conversation, or replace it in place (an item
    truncated after it was stored keeps its position)."""
    return (
        "INSERT INTO items (conversation_id, id, seq, type, role, data, call_id, created_at) "
        "VALUES (?, ?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM items WHERE conversation_id = ?),"
        " ?, ?, ?, ?, ?) ON CONFLICT (conversation_id, id) DO UPDATE SET "
        "type = excluded.type, role = excluded.role, data = excluded.data",
        (
            conversation_id,
            str(item["id"]),
            conversation_id,
            str(item.get("type", "message")),
            item.get("role"),
            json.dumps(item, separators=(",", ":")),
            call_id,
            at,
        ),
    )


def touch_statement(conversation_id: str, at: float) -> Statement:
    return ("UPDATE conversations SET updated_at = ? WHERE id = ?", (at, conversation_id))


def delete_item_statement(conversation_id: str, item_id: str) -> Statement:
    return ("DELETE FROM items WHERE conversation_id = ? AND id = ?", (conversation_id, item_id))


class ConversationStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # ---- conversations ---------------------------------------------------------------------

    async def create(
        self,
        tenant: str,
        *,
        user: str | None = None,
        persona: str | None = None,
        metadata: dict[str, str] | None = None,
        items: list[Any] | None = None,
        conversation_id: str | None = None,
    ) -> ConversationRecord:
        """A new conversation with its initial items (checked and normalized)."""
        items = items or []
        if not isinstance(items, list) or len(items) > MAX_ITEMS_PER_REQUEST:
            raise InvalidInput(
                "invalid_items",
                f"items must be a list of at most {MAX_ITEMS_PER_REQUEST} items",
                param="items",
            )
        normalized = [normalize_item(raw, f"items[{i}]") for i, raw in enumerate(items)]
        metadata = check_metadata(metadata)
        now = time.time()
        conversation_id = conversation_id or new_id("conv")
        statements: list[Statement] = [
            (
                "INSERT INTO conversations (id, tenant, user_id, persona, metadata, created_at,"
                " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (conversation_id, tenant, user, persona, json.dumps(metadata), now, now),
            )
        ]
        statements += [upsert_item_statement(conversation_id, i, None, now) for i in normalized]
        await self.db.transaction(statements)
        return ConversationRecord(
            conversation_id, tenant, user, persona, metadata, now, now, items=len(normalized)
        )

    def _record(self, row: Row) -> ConversationRecord:
        return ConversationRecord(
            id=row["id"],
            tenant=row["tenant"],
            user=row["user_id"],
            persona=row["persona"],
            metadata=json.loads(row["metadata"]),
            created_at=float(row["created_at"]),
            updated_at=float(row["updated_at"]),
            summary=row["summary"],
            summary_through=row["summary_through"],
            items=int(row.get("item_count") or 0),
        )

    _SELECT = (
        "SELECT c.*, (SELECT COUNT(*) FROM items i WHERE i.conversation_id = c.id) AS item_count"
        " FROM conversations c"
    )

    async def get(self, tenant: str | None, conversation_id: str) -> ConversationRecord:
        """The conversation if `tenant` may see it (None: any tenant); else NotFound."""
        check_conversation_id(conversation_id)
        row = await self.db.fetchone(f"{self._SELECT} WHERE c.id = ?", (conversation_id,))
        if row is None or (tenant is not None and row["tenant"] != tenant):
            raise NotFound("conversation_not_found", f"No conversation with id '{conversation_id}'")
        calls = await self.db.fetch(
            "SELECT id FROM calls WHERE conversation_id = ? ORDER BY started_at",
            (conversation_id,),
        )
        return dataclasses.replace(self._record(row), calls=[c["id"] for c in calls])

    async def list(
        self, tenant: str | None, *, limit: Any = None, after: str | None = None
    ) -> Page:
        """Newest first; `after` is the id of the last conversation of the previous page."""
        limit = check_limit(limit)
        where, params = ([], []) if tenant is None else (["c.tenant = ?"], [tenant])
        if after is not None:
            if not CONVERSATION_ID.fullmatch(after):
                raise InvalidInput(
                    "invalid_cursor", "after must be a conversation id", param="after"
                )
            cursor = await self.db.fetchone(
                "SELECT created_at, tenant FROM conversations WHERE id = ?", (after,)
            )
            if cursor is None or (tenant is not None and cursor["tenant"] != tenant):
                raise NotFound(
                    "conversation_not_found",
                    f"after: no conversation '{after}' to list after",
                    param="after",
                )
            where.append("(c.created_at < ? OR (c.created_at = ? AND c.id < ?))")
            params += [cursor["created_at"], cursor["created_at"], after]
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        rows = await self.db.fetch(
            f"{self._SELECT}{clause} ORDER BY c.created_at DESC, c.id DESC LIMIT ?",
            (*params, limit + 1),
        )
        return Page([self._record(r) for r in rows[:limit]], len(rows) > limit)

    async def update_metadata(
        self, tenant: str, conversation_id: str, metadata: Any
    ) -> ConversationRecord:
        await self.get(tenant, conversation_id)
        checked = check_metadata(metadata)
        await self.db.execute(
            "UPDATE conversations SET metadata = ?, updated_at = ? WHERE id = ?",
            (json.dumps(checked), time.time(), conversation_id),
        )
        return await self.get(tenant, conversation_id)

    async def delete(self, tenant: str, conversation_id: str) -> list[str]:
        """Deletes the conversation, its items, calls and recording rows; returns the
        recording files to erase."""
        await self.get(tenant, conversation_id)
        files = await self.db.fetch(
            "SELECT path FROM recordings WHERE conversation_id = ?", (conversation_id,)
        )
        await self.db.transaction(
            [
                ("DELETE FROM recordings WHERE conversation_id = ?", (conversation_id,)),
                ("DELETE FROM calls WHERE conversation_id = ?", (conversation_id,)),
                ("DELETE FROM items WHERE conversation_id = ?", (conversation_id,)),
                ("DELETE FROM conversations WHERE id = ?", (conversation_id,)),
            ]
        )
        return [row["path"] for row in files]

    async def set_summary(self, conversation_id: str, summary: str, through_seq: int) -> None:
        await self.db.execute(
            "UPDATE conversations SET summary = ?, summary_through = ? WHERE id = ?",
            (summary, through_seq, conversation_id),
        )

    # ---- items -----------------------------------------------------------------------------

    async def items(
        self,
        tenant: str | None,
        conversation_id: str,
        *,
        limit: Any = None,
        after: str | None = None,
        order: str | None = None,
    ) -> Page:
        """A page of items; `order` is `desc` (OpenAI's default) or `asc`."""
        await self.get(tenant, conversation_id)
        limit = check_limit(limit)
        order = order or "desc"
        if order not in ("asc", "desc"):
            raise InvalidInput("invalid_order", "order must be 'asc' or 'desc'", param="order")
        where, params = "conversation_id = ?", [conversation_id]
        if after is not None:
            if not ITEM_ID.fullmatch(after):
                raise InvalidInput("invalid_cursor", "after must be an item id", param="after")
            cursor = await self.db.fetchone(
                "SELECT seq FROM items WHERE conversation_id = ? AND id = ?",
                (conversation_id, after),
            )
            if cursor is None:
                raise NotFound(
                    "item_not_found",
                    f"after: no item '{after}' in this conversation",
                    param="after",
                )
            where += " AND seq > ?" if order == "asc" else " AND seq < ?"
            params.append(cursor["seq"])
        rows = await self.db.fetch(
            f"SELECT data FROM items WHERE {where} ORDER BY seq {order.upper()} LIMIT ?",
            (*params, limit + 1),
        )
        return Page([json.loads(r["data"]) for r in rows[:limit]], len(rows) > limit)

    async def item(self, tenant: str | None, conversation_id: str, item_id: str) -> dict[str, Any]:
        await self.get(tenant, conversation_id)
        row = await self.db.fetchone(
            "SELECT data FROM items WHERE conversation_id = ? AND id = ?",
            (conversation_id, item_id),
        )
        if row is None:
            raise NotFound("item_not_found", f"No item with id '{item_id[:64]}'")
        return dict(json.loads(row["data"]))

    async def add_items(
        self, tenant: str, conversation_id: str, items: Any
    ) -> list[dict[str, Any]]:
        await self.get(tenant, conversation_id)
        if not isinstance(items, list) or not 1 <= len(items) <= MAX_ITEMS_PER_REQUEST:
            raise InvalidInput(
                "invalid_items",
                f"items must be a list of 1-{MAX_ITEMS_PER_REQUEST} items",
                param="items",
            )
        normalized = [normalize_item(raw, f"items[{i}]") for i, raw in enumerate(items)]
        now = time.time()
        await self.db.transaction(
            [
                *(upsert_item_statement(conversation_id, i, None, now) for i in normalized),
                touch_statement(conversation_id, now),
            ]
        )
        return normalized

    async def delete_item(self, conversation_id: str, item_id: str) -> None:
        await self.db.transaction(
            [
                delete_item_statement(conversation_id, item_id),
                touch_statement(conversation_id, time.time()),
            ]
        )

    async def history(self, conversation_id: str) -> list[tuple[int, dict[str, Any]]]:
        """Every item with its position, oldest first (a resumed call's replay)."""
        rows = await self.db.fetch(
            "SELECT seq, data FROM items WHERE conversation_id = ? ORDER BY seq",
            (conversation_id,),
        )
        return [(int(r["seq"]), json.loads(r["data"])) for r in rows]

    # ---- calls -----------------------------------------------------------------------------

    async def call_started(self, call_id: str, conversation_id: str, tenant: str) -> None:
        await self.db.transaction(
            [
                (
                    "INSERT INTO calls (id, conversation_id, tenant, started_at) "
                    "VALUES (?, ?, ?, ?)",
                    (call_id, conversation_id, tenant, time.time()),
                ),
                touch_statement(conversation_id, time.time()),
            ]
        )


def call_ended_statement(call_id: str, reason: str, at: float) -> Statement:
    return ("UPDATE calls SET ended_at = ?, end_reason = ? WHERE id = ?", (at, reason, call_id))
