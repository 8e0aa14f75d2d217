"""A worker's `SharedState`: every call is forwarded to the front's `MemoryState`.

Used when a worker runs under the front (`HARK_STATE_SOCKET` names the socket) and no
Redis is configured. One connection carries requests (answered in any order, matched by
id) and the messages of the channels this worker subscribed to. A lost connection
surfaces as `Unavailable` (a 503), never a crash; the next call reconnects and the
subscriptions are renewed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from typing import Any

from server.cluster.shared_state import Subscriber, unavailable
from server.workers.state_protocol import MAX_LINE, encode

log = logging.getLogger("hark.workers.state")

TIMEOUT_S = 5.0


class LocalState:
    name = "front"

    def __init__(self, path: str) -> None:
        self.path = path
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._handlers: dict[str, list[Subscriber]] = {}
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._connecting = asyncio.Lock()
        self._closing = False
        self._pending: set[asyncio.Task[None]] = set()

    async def _connection(self) -> asyncio.StreamWriter:
        async with self._connecting:
            if self._writer is not None and not self._writer.is_closing():
                return self._writer
            reader, writer = await asyncio.open_unix_connection(self.path, limit=MAX_LINE)
            self._writer = writer
            self._reader_task = asyncio.create_task(self._read(reader), name="local-state")
            for channel in self._handlers:
                writer.write(encode({"id": 0, "op": "subscribe", "args": [channel]}))
            return writer

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while line := await reader.readline():
                message = json.loads(line)
                if "channel" in message:
                    for handler in list(self._handlers.get(message["channel"], [])):
                        try:
                            await handler(str(message["message"]))
                        except Exception:
                            log.exception("subscriber of %s failed", message["channel"])
                    continue
                waiter = self._waiting.pop(int(message.get("id", 0)), None)
                if waiter is None or waiter.done():
                    continue
                if "error" in message:
                    waiter.set_exception(RuntimeError(message["error"]))
                else:
                    waiter.set_result(message.get("result"))
        except (ConnectionError, ValueError) as exc:
            log.warning("the front's state connection failed: %s", exc)
        finally:
            self._writer = None
            for waiter in self._waiting.values():
                if not waiter.done():
                    waiter.set_exception(ConnectionError("the front's state connection closed"))
            self._waiting.clear()

    async def _call(self, op: str, *args: Any) -> Any:
        try:
            writer = await self._connection()
            rid = next(self._ids)
            waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            self._waiting[rid] = waiter
            writer.write(encode({"id": rid, "op": op, "args": list(args)}))
            return await asyncio.wait_for(waiter, TIMEOUT_S)
        except (OSError, RuntimeError, TimeoutError) as exc:
            log.warning("shared state op %s failed: %s", op, exc)
            raise unavailable(exc) from exc

    async def claim_once(self, key: str, ttl_s: float) -> bool:
        return bool(await self._call("claim_once", key, ttl_s))

    async def count_hit(self, key: str, window_s: int) -> int:
        return int(await self._call("count_hit", key, window_s))

    async def set_value(self, key: str, value: str, ttl_s: float) -> None:
        await self._call("set_value", key, value, ttl_s)

    async def get_value(self, key: str) -> str | None:
        value = await self._call("get_value", key)
        return None if value is None else str(value)

    async def values(self, prefix: str) -> dict[str, str]:
        return dict(await self._call("values", prefix))

    async def lease_add(self, group: str, member: str, ttl_s: float) -> int:
        return int(await self._call("lease_add", group, member, ttl_s))

    async def lease_remove(self, group: str, member: str) -> None:
        await self._call("lease_remove", group, member)

    async def lease_members(self, group: str) -> list[str]:
        return list(await self._call("lease_members", group))

    async def record_put(self, key: str, fields: dict[str, str], ttl_s: float) -> None:
        await self._call("record_put", key, fields, ttl_s)

    async def record_get(self, key: str) -> dict[str, str] | None:
        record = await self._call("record_get", key)
        return None if record is None else dict(record)

    async def record_delete(self, key: str) -> None:
        await self._call("record_delete", key)

    async def publish(self, channel: str, message: str) -> None:
        await self._call("publish", channel, message)

    def subscribe(self, channel: str, handler: Subscriber) -> None:
        """Calls `handler` for every message on `channel` (the subscription is sent on the
        next connection, made at once in the background)."""
        first = channel not in self._handlers
        self._handlers.setdefault(channel, []).append(handler)
        if first:
            task = asyncio.create_task(self._subscribe(channel), name=f"sub-{channel}")
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _subscribe(self, channel: str) -> None:
        with contextlib.suppress(Exception):
            if self._writer is None or self._writer.is_closing():
                await self._connection()  # subscribes every channel as it connects
            else:
                await self._call("subscribe", channel)

    async def close(self) -> None:
        self._closing = True
        self._handlers.clear()
        if self._writer is not None:
            self._writer.close()
        if self._reader_task is not None:
            self._reader_task.cancel()
            await asyncio.gather(self._reader_task, return_exceptions=True)
