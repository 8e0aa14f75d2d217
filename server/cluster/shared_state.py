"""State that several Hark nodes must agree on: Redis when `HARK_REDIS_URL` is set, else memory.

Five primitives cover single-use tokens, rate limits, revocations and the call registry:
a set-if-absent with expiry, a fixed-window counter, plain values with expiry, *leases*
(members of a group that vanish unless refreshed, so a dead node's calls expire) and
pub/sub. `MemoryState` is the embedded single-node default; `RedisState` makes the same
calls on a Redis server shared by every node. A Redis failure surfaces as `Unavailable`
(a 503 over HTTP), never a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from server.errors import Unavailable

log = logging.getLogger("hark.state")

Subscriber = Callable[[str], Awaitable[None]]
PREFIX = "hark:"


def unavailable(exc: Exception) -> Unavailable:
    return Unavailable(
        "shared_state_unavailable",
        "Hark's shared state (Redis) is unreachable; retry shortly",
        retry_after_s=2,
    )


class SharedState(Protocol):
    name: str

    async def claim_once(self, key: str, ttl_s: float) -> bool:
        """True the first time `key` is claimed within `ttl_s`, False afterwards."""
        ...

    async def count_hit(self, key: str, window_s: int) -> int:
        """Adds one to `key`'s counter for the current window and returns the count."""
        ...

    async def set_value(self, key: str, value: str, ttl_s: float) -> None: ...

    async def get_value(self, key: str) -> str | None: ...

    async def values(self, prefix: str) -> dict[str, str]: ...

    async def lease_add(self, group: str, member: str, ttl_s: float) -> int:
        """Adds or refreshes `member`; returns the group's live size including it."""
        ...

    async def lease_remove(self, group: str, member: str) -> None: ...

    async def lease_members(self, group: str) -> list[str]: ...

    async def record_put(self, key: str, fields: dict[str, str], ttl_s: float) -> None: ...

    async def record_get(self, key: str) -> dict[str, str] | None: ...

    async def record_delete(self, key: str) -> None: ...

    async def publish(self, channel: str, message: str) -> None: ...

    def subscribe(self, channel: str, handler: Subscriber) -> None:
        """Calls `handler` for every message on `channel` until `close()`."""
        ...

    async def close(self) -> None: ...


class MemoryState:
    """One process's state; every method is exact, expiry is checked on read."""

    name = "memory"

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._expiring: dict[str, tuple[str, float]] = {}
        self._counters: dict[str, tuple[int, float]] = {}
        self._leases: dict[str, dict[str, float]] = {}
        self._records: dict[str, tuple[dict[str, str], float]] = {}
        self._subscribers: dict[str, list[Subscriber]] = {}

    def _sweep(self) -> None:
        now = self._clock()
        if len(self._expiring) > 1000:
            self._expiring = {k: v for k, v in self._expiring.items() if v[1] > now}
        if len(self._counters) > 1000:
            self._counters = {k: v for k, v in self._counters.items() if v[1] > now}

    async def claim_once(self, key: str, ttl_s: float) -> bool:
        self._sweep()
        now = self._clock()
        held = self._expiring.get(key)
        if held is not None and held[1] > now:
            return False
        self._expiring[key] = ("1", now + ttl_s)
        return True

    async def count_hit(self, key: str, window_s: int) -> int:
        self._sweep()
        now = self._clock()
        count, until = self._counters.get(key, (0, 0.0))
        if until <= now:
            count, until = 0, now + window_s
        self._counters[key] = (count + 1, until)
        return count + 1

    async def set_value(self, key: str, value: str, ttl_s: float) -> None:
        self._sweep()
        self._expiring[key] = (value, self._clock() + ttl_s)

    async def get_value(self, key: str) -> str | None:
        held = self._expiring.get(key)
        return held[0] if held is not None and held[1] > self._clock() else None

    async def values(self, prefix: str) -> dict[str, str]:
        now = self._clock()
        return {k: v for k, (v, t) in self._expiring.items() if k.startswith(prefix) and t > now}

    def _live(self, group: str) -> dict[str, float]:
        now = self._clock()
        members = {m: t for m, t in self._leases.get(group, {}).items() if t > now}
        if members:
            self._leases[group] = members
        else:
            self._leases.pop(group, None)
        return members

    async def lease_add(self, group: str, member: str, ttl_s: float) -> int:
        members = self._live(group)
        members[member] = self._clock() + ttl_s
        self._leases[group] = members
        return len(members)

    async def lease_remove(self, group: str, member: str) -> None:
        self._leases.get(group, {}).pop(member, None)
        self._live(group)

    async def lease_members(self, group: str) -> list[str]:
        return list(self._live(group))

    async def record_put(self, key: str, fields: dict[str, str], ttl_s: float) -> None:
        self._records[key] = (dict(fields), self._clock() + ttl_s)

    async def record_get(self, key: str) -> dict[str, str] | None:
        held = self._records.get(key)
        if held is None or held[1] <= self._clock():
            self._records.pop(key, None)
            return None
        return dict(held[0])

    async def record_delete(self, key: str) -> None:
        self._records.pop(key, None)

    async def publish(self, channel: str, message: str) -> None:
        for handler in list(self._subscribers.get(channel, [])):
            try:
                await handler(message)
            except Exception:
                log.exception("subscriber of %s failed", channel)

    def subscribe(self, channel: str, handler: Subscriber) -> None:
        self._subscribers.setdefault(channel, []).append(handler)

    def unsubscribe(self, channel: str, handler: Subscriber) -> None:
        """Drops `handler` (a worker's connection to the front's state ended)."""
        handlers = self._subscribers.get(channel, [])
        if handler in handlers:
            handlers.remove(handler)
        if not handlers:
            self._subscribers.pop(channel, None)

    async def close(self) -> None:
        self._subscribers.clear()


class RedisState:
    """The same primitives on Redis (redis-py asyncio); keys are prefixed `hark:`."""

    name = "redis"

    def __init__(self, url: str) -> None:
        import redis.asyncio as redis

        self._errors: tuple[type[Exception], ...] = (redis.RedisError, OSError)
        self._redis: Any = redis.Redis.from_url(
            url, decode_responses=True, socket_timeout=5, socket_connect_timeout=5
        )
        self._listeners: list[asyncio.Task[None]] = []
        self._closing = False

    async def _run(self, operation: Awaitable[Any]) -> Any:
        try:
            return await operation
        except self._errors as exc:
            log.warning("redis operation failed: %s", exc)
            raise unavailable(exc) from exc

    async def claim_once(self, key: str, ttl_s: float) -> bool:
        ms = max(1, int(ttl_s * 1000))
        return bool(await self._run(self._redis.set(PREFIX + key, "1", nx=True, px=ms)))

    async def count_hit(self, key: str, window_s: int) -> int:
        async def hit() -> int:
            pipe = self._redis.pipeline(transaction=True)
            pipe.incr(PREFIX + key)
            pipe.expire(PREFIX + key, window_s, nx=True)
            count, _ = await pipe.execute()
            return int(count)

        return int(await self._run(hit()))

    async def set_value(self, key: str, value: str, ttl_s: float) -> None:
        await self._run(self._redis.set(PREFIX + key, value, px=max(1, int(ttl_s * 1000))))

    async def get_value(self, key: str) -> str | None:
        return await self._run(self._redis.get(PREFIX + key))

    async def values(self, prefix: str) -> dict[str, str]:
        async def scan() -> dict[str, str]:
            found: dict[str, str] = {}
            async for key in self._redis.scan_iter(match=PREFIX + prefix + "*", count=500):
                value = await self._redis.get(key)
                if value is not None:
                    found[key[len(PREFIX) :]] = value
            return found

        return dict(await self._run(scan()))

    async def lease_add(self, group: str, member: str, ttl_s: float) -> int:
        async def add() -> int:
            now = time.time()
            key = PREFIX + group
            pipe = self._redis.pipeline(transaction=True)
            pipe.zremrangebyscore(key, "-inf", now)
            pipe.zadd(key, {member: now + ttl_s})
            pipe.zcard(key)
            pipe.expire(key, max(1, int(ttl_s) + 1))
            result = await pipe.execute()
            return int(result[2])

        return int(await self._run(add()))

    async def lease_remove(self, group: str, member: str) -> None:
        await self._run(self._redis.zrem(PREFIX + group, member))

    async def lease_members(self, group: str) -> list[str]:
        key = PREFIX + group
        return list(await self._run(self._redis.zrangebyscore(key, time.time(), "+inf")))

    async def record_put(self, key: str, fields: dict[str, str], ttl_s: float) -> None:
        async def put() -> None:
            pipe = self._redis.pipeline(transaction=True)
            pipe.delete(PREFIX + key)
            pipe.hset(PREFIX + key, mapping=fields)
            pipe.pexpire(PREFIX + key, max(1, int(ttl_s * 1000)))
            await pipe.execute()

        await self._run(put())

    async def record_get(self, key: str) -> dict[str, str] | None:
        fields = await self._run(self._redis.hgetall(PREFIX + key))
        return dict(fields) if fields else None

    async def record_delete(self, key: str) -> None:
        await self._run(self._redis.delete(PREFIX + key))

    async def publish(self, channel: str, message: str) -> None:
        await self._run(self._redis.publish(PREFIX + channel, message))

    def subscribe(self, channel: str, handler: Subscriber) -> None:
        self._listeners.append(
            asyncio.create_task(self._listen(PREFIX + channel, handler), name=f"sub-{channel}")
        )

    async def _listen(self, channel: str, handler: Subscriber) -> None:
        while not self._closing:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(channel)
                async for message in pubsub.listen():
                    if message.get("type") != "message":
                        continue
                    try:
                        await handler(str(message["data"]))
                    except Exception:
                        log.exception("subscriber of %s failed", channel)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._closing:
                    return
                log.warning("redis subscription to %s lost (%s); resubscribing", channel, exc)
                await asyncio.sleep(1.0)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    async def close(self) -> None:
        self._closing = True
        for task in self._listeners:
            task.cancel()
        if self._listeners:
            await asyncio.wait(self._listeners, timeout=2.0)
        self._listeners.clear()
        with contextlib.suppress(Exception):
            await self._redis.aclose()


def open_shared_state(redis_url: str) -> SharedState:
    return RedisState(redis_url) if redis_url else MemoryState()
