"""Single use, rate limits, revocation, leases and the call registry's limits: the same
tests on the in-process state and on a real redis-server."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from server.cluster.registry import CallRegistry
from server.cluster.shared_state import MemoryState, RedisState, SharedState
from server.errors import HarkError, LimitReached, Overloaded
from signaling.auth import Caller
from signaling.client_secrets import ClientSecrets
from signaling.errors import ApiError, from_domain
from signaling.rate_limits import RateLimiter
from signaling.token_ledger import TokenLedger


@pytest.fixture(params=["memory", "redis"])
async def shared(request) -> SharedState:
    if request.param == "memory":
        state: SharedState = MemoryState()
    else:
        state = RedisState(request.getfixturevalue("redis_url"))
    yield state
    await state.close()


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


async def test_claim_once_holds_for_its_ttl(shared):
    key = unique("jti")
    assert await shared.claim_once(key, 0.4)
    assert not await shared.claim_once(key, 0.4)
    await asyncio.sleep(0.6)
    assert await shared.claim_once(key, 0.4), "the claim should lapse with its ttl"


async def test_leases_count_and_expire(shared):
    group = unique("group")
    assert await shared.lease_add(group, "a", 0.5) == 1
    assert await shared.lease_add(group, "b", 5) == 2
    assert await shared.lease_add(group, "b", 5) == 2, "refreshing is not adding"
    await asyncio.sleep(0.7)
    assert sorted(await shared.lease_members(group)) == ["b"]
    await shared.lease_remove(group, "b")
    assert await shared.lease_members(group) == []


async def test_records_values_and_pubsub(shared):
    key = unique("call")
    await shared.record_put(key, {"node": "n1", "sub": "u"}, 5)
    assert await shared.record_get(key) == {"node": "n1", "sub": "u"}
    await shared.record_delete(key)
    assert await shared.record_get(key) is None
    prefix = unique("revoked") + ":"
    await shared.set_value(prefix + "u1", "12.5", 5)
    assert await shared.values(prefix) == {prefix + "u1": "12.5"}
    received: list[str] = []

    async def handler(message: str) -> None:
        received.append(message)

    channel = unique("chan")
    shared.subscribe(channel, handler)
    for _ in range(50):  # a Redis subscription is established asynchronously
        await shared.publish(channel, "hello")
        if received:
            break
        await asyncio.sleep(0.05)
    assert received and received[0] == "hello"


async def test_rate_limiter_refuses_past_the_limit_with_retry_after(shared):
    limiter = RateLimiter(shared, window_s=60)
    who = unique("key")
    for _ in range(3):
        await limiter.hit("mint", who, 3)
    with pytest.raises(ApiError) as info:
        await limiter.hit("mint", who, 3)
    assert info.value.status == 429 and info.value.code == "rate_limit_exceeded"
    assert 1 <= int(info.value.headers["Retry-After"]) <= 61
    await limiter.hit("mint", unique("other"), 3)  # another key has its own budget
    await limiter.hit("mint", who, 0)  # 0 = unlimited


async def test_secret_is_single_use_across_ledgers_sharing_state(shared):
    secrets = ClientSecrets("k" * 32)
    claims = secrets.verify(secrets.mint({}, 60)[0])
    node_a, node_b = TokenLedger(shared), TokenLedger(shared)
    await node_a.claim(claims)
    with pytest.raises(ApiError) as info:
        await node_b.claim(claims)
    assert info.value.status == 401 and info.value.code == "token_already_used"


async def test_revocation_refuses_older_tokens_and_reaches_other_nodes(shared):
    secrets = ClientSecrets("k" * 32)
    sub = unique("user")
    node_a, node_b = TokenLedger(shared), TokenLedger(shared)
    ended_on_b: list[str] = []

    async def end_b(revoked: str) -> int:
        ended_on_b.append(revoked)
        return 1

    await node_a.start()
    await node_b.start()
    node_b.on_revoked(end_b)
    before = secrets.verify(secrets.mint({}, 60, sub)[0])
    other = secrets.verify(secrets.mint({}, 60, unique("user"))[0])
    await asyncio.sleep(0.2)  # let Redis subscriptions settle
    await node_a.revoke(sub)
    with pytest.raises(ApiError) as info:
        node_a.check_not_revoked(before)
    assert info.value.code == "client_secret_revoked"
    with pytest.raises(ApiError):
        await node_b.check_fresh(before)  # authoritative, even before pub/sub arrives
    node_b.check_not_revoked(other)
    await asyncio.sleep(0.01)
    after = secrets.verify(secrets.mint({}, 60, sub)[0])
    node_a.check_not_revoked(after)  # the user signed in again
    for _ in range(50):
        if ended_on_b:
            break
        await asyncio.sleep(0.05)
    assert ended_on_b == [sub], "node B was not told to end the sub's calls"
    # A node started later learns old revocations from the state.
    node_c = TokenLedger(shared)
    await node_c.start()
    with pytest.raises(ApiError):
        node_c.check_not_revoked(before)


def caller(sub: str | None, key: str | None) -> Caller:
    return Caller("client_secret", "jti:" + uuid.uuid4().hex, sub=sub, key=key)


async def test_admission_limits_per_node_sub_and_key(shared):
    registry = CallRegistry(shared, "node-a", ttl_s=5, max_calls=3, max_per_key=2, max_per_sub=1)
    other_node = CallRegistry(shared, "node-b", ttl_s=5, max_calls=3, max_per_key=2, max_per_sub=1)
    sub, key = unique("user"), unique("key")
    first = await registry.admit(caller(sub, key), live_here=0)
    with pytest.raises(LimitReached) as info:
        await other_node.admit(caller(sub, None), live_here=0)  # same sub on another node
    assert http(info.value) == (429, "sub_call_limit")
    second = await other_node.admit(caller(unique("user"), key), live_here=0)
    with pytest.raises(LimitReached) as info:
        await registry.admit(caller(unique("user"), key), live_here=1)
    assert http(info.value) == (429, "key_call_limit")
    with pytest.raises(Overloaded) as full:
        await registry.admit(caller(None, None), live_here=3)
    assert http(full.value) == (503, "server_full")
    assert from_domain(full.value).headers["Retry-After"] == "5"
    await registry.release(first)
    await other_node.release(second)
    again = await registry.admit(caller(sub, key), live_here=0)
    await registry.release(again)


def http(error: HarkError) -> tuple[int, str]:
    """What a client sees of a domain refusal."""
    api = from_domain(error)
    return api.status, api.code


async def test_a_dead_nodes_slots_lapse(shared):
    sub = unique("user")
    dead = CallRegistry(shared, "dead", ttl_s=0.5, max_calls=0, max_per_key=0, max_per_sub=1)
    await dead.admit(caller(sub, None), live_here=0)  # never released, never refreshed
    alive = CallRegistry(shared, "alive", ttl_s=5, max_calls=0, max_per_key=0, max_per_sub=1)
    with pytest.raises(LimitReached):
        await alive.admit(caller(sub, None), live_here=0)
    await asyncio.sleep(0.7)
    await alive.release(await alive.admit(caller(sub, None), live_here=0))
