"""Every live call of every node, and the admission limits that need that view.

Each call is a record (node, `sub`, API key, start time, state) plus *leases* in the
shared state: in the group of all calls, of its sub and of its key. A node refreshes its
leases every third of `HARK_REGISTRY_TTL`; when a node dies its leases lapse and its
calls drop out of every count. Admission adds the leases before the call is created and
counts the group, so two nodes racing for a sub's last slot cannot both win.

Writes for a call's start, state changes and end go through one queue, in order, so the
20 ms audio path and the HTTP handlers never wait on Redis for bookkeeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from server.cluster.shared_state import SharedState
from server.errors import LimitReached, Overloaded, Unavailable
from server.ops.log_format import log_event

if TYPE_CHECKING:
    from server.call.session import RealtimeSession
    from server.calls.manager import CallManager

log = logging.getLogger("hark.registry")

ALL = "calls"
ENDED_TTL_S = 300.0  # how long other nodes route an ended call's requests to its node


@dataclass
class Ticket:
    """A reserved slot: leases taken for a call that is being created."""

    id: str
    groups: list[str] = field(default_factory=list)
    counted_locally: bool = True


class CallerIdentity(Protocol):
    """Who opens a call, as admission needs it (the HTTP face's credential fits)."""

    @property
    def sub(self) -> str | None: ...

    @property
    def key(self) -> str | None: ...

    @property
    def kind(self) -> str: ...


@dataclass
class RegisteredCall:
    call_id: str
    node: str
    sub: str | None
    key: str | None
    started_at: float
    state: str = "connecting"
    ticket: Ticket | None = None

    def fields(self) -> dict[str, str]:
        data = asdict(self)
        data.pop("ticket")
        return {k: "" if v is None else str(v) for k, v in data.items()}


def _limit_error(code: str, message: str) -> LimitReached:
    return LimitReached(code, message, retry_after_s=5)


class CallRegistry:
    def __init__(
        self,
        shared: SharedState,
        node_id: str,
        *,
        ttl_s: float,
        max_calls: int,
        max_per_key: int,
        max_per_sub: int,
    ) -> None:
        self.shared = shared
        self.node_id = node_id
        self.ttl_s = ttl_s
        self.max_calls = max_calls
        self.max_per_key = max_per_key
        self.max_per_sub = max_per_sub
        self.local: dict[str, RegisteredCall] = {}
        self._pending = 0
        self._queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []

    # ---- lifecycle -----------------------------------------------------------------------

    def attach(self, calls: CallManager) -> None:
        calls.on_call_ended.append(self._on_call_ended)
        self._tasks = [
            asyncio.create_task(self._writer(), name="registry-writer"),
            asyncio.create_task(self._heartbeat(), name="registry-heartbeat"),
        ]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for record in list(self.local.values()):
            with contextlib.suppress(Exception):
                await self._remove(record)
        self.local.clear()

    # ---- admission -----------------------------------------------------------------------

    @property
    def registered_here(self) -> int:
        """Calls created and recorded on this node (not those still being created, which
        `admit` counts as pending: counting a call twice while its session starts would
        refuse callers below the limit)."""
        return len(self.local)

    async def admit(self, caller: CallerIdentity, live_here: int) -> Ticket:
        """Reserves a slot for `caller`'s call, or raises `Overloaded` / `LimitReached`
        naming the limit hit. `live_here`: the node's registered calls (`registered_here`)."""
        if self.max_calls and live_here + self._pending >= self.max_calls:
            raise Overloaded(
                "server_full",
                f"This node is at its limit of {self.max_calls} concurrent calls; retry shortly",
                retry_after_s=5,
            )
        self._pending += 1
        ticket = Ticket("tk_" + secrets.token_hex(8))
        try:
            checks = []
            if self.max_per_sub and caller.sub is not None:
                checks.append((f"calls:sub:{caller.sub}", self.max_per_sub, "sub_call_limit"))
            if self.max_per_key and caller.key is not None:
                checks.append((f"calls:key:{caller.key}", self.max_per_key, "key_call_limit"))
            for group, limit, code in checks:
                ticket.groups.append(group)
                count = await self.shared.lease_add(group, ticket.id, self.ttl_s)
                if count > limit:
                    who = "user (sub)" if code == "sub_call_limit" else "API key"
                    raise _limit_error(
                        code, f"This {who} already has {limit} live calls; hang one up first"
                    )
        except BaseException:
            await self.release(ticket)
            raise
        return ticket

    async def release(self, ticket: Ticket) -> None:
        """Gives back a slot whose call was never created."""
        if ticket.counted_locally:
            ticket.counted_locally = False
            self._pending -= 1
        for group in ticket.groups:
            with contextlib.suppress(Unavailable):
                await self.shared.lease_remove(group, ticket.id)

    def add(self, session: RealtimeSession, caller: CallerIdentity, ticket: Ticket) -> None:
        """Records a created call (synchronously; the shared state is written in order)."""
        if ticket.counted_locally:
            ticket.counted_locally = False
            self._pending -= 1
        record = RegisteredCall(
            session.call_id,
            self.node_id,
            caller.sub,
            caller.key,
            session.created_at,
            ticket=ticket,
        )
        log_event(
            log,
            "call.created",
            call_id=record.call_id,
            node=record.node,
            sub=record.sub,
            key=record.key,
            credential=caller.kind,
        )
        if session.closed:
            self._queue.put_nowait(("remove", record))
            return
        self.local[record.call_id] = record
        self._queue.put_nowait(("put", record))

    def set_state(self, call_id: str, state: str) -> None:
        record = self.local.get(call_id)
        if record is not None and record.state != state:
            record.state = state
            self._queue.put_nowait(("put", record))

    def sub_of(self, call_id: str) -> str | None:
        record = self.local.get(call_id)
        return record.sub if record is not None else None

    def _on_call_ended(self, session: RealtimeSession) -> None:
        record = self.local.pop(session.call_id, None)
        if record is not None:
            self._queue.put_nowait(("remove", record))

    # ---- the cluster-wide view ------------------------------------------------------------

    async def locate(self, call_id: str) -> dict[str, str] | None:
        """A live call's record (`node`, `key`, `sub`, …) on whichever node holds it."""
        record = self.local.get(call_id)
        if record is not None:
            return record.fields()
        return await self.shared.record_get("call:" + call_id)

    async def owner_of(self, call_id: str) -> str | None:
        """The node that holds `call_id`, or held it until it ended within the last
        `ENDED_TTL_S` (so a second hang-up reaches the node that knows the call ended,
        and gets the same answer through every node)."""
        record = await self.locate(call_id)
        if record is None:
            record = await self.shared.record_get("ended:" + call_id)
        return (record or {}).get("node") or None

    async def all_calls(self) -> list[dict[str, str]]:
        """Every live call on every node that shares the state."""
        found = []
        for call_id in await self.shared.lease_members(ALL):
            record = await self.shared.record_get("call:" + call_id)
            if record is not None:
                found.append(record)
        return found

    # ---- writing to the shared state ------------------------------------------------------

    async def _put(self, record: RegisteredCall) -> None:
        await self.shared.record_put("call:" + record.call_id, record.fields(), self.ttl_s)
        await self.shared.lease_add(ALL, record.call_id, self.ttl_s)
        if record.ticket is not None:
            for group in record.ticket.groups:
                await self.shared.lease_add(group, record.ticket.id, self.ttl_s)

    async def _remove(self, record: RegisteredCall) -> None:
        await self.shared.lease_remove(ALL, record.call_id)
        await self.shared.record_delete("call:" + record.call_id)
        await self.shared.record_put("ended:" + record.call_id, {"node": record.node}, ENDED_TTL_S)
        if record.ticket is not None:
            for group in record.ticket.groups:
                await self.shared.lease_remove(group, record.ticket.id)

    async def _writer(self) -> None:
        while True:
            action, record = await self._queue.get()
            try:
                if action == "put":
                    if record.call_id in self.local:
                        await self._put(record)
                else:
                    await self._remove(record)
            except Exception as exc:
                log.warning("registry write for %s failed: %s", record.call_id, exc)

    async def _heartbeat(self) -> None:
        # Refreshes go through the writer's queue, so a refresh never overtakes a removal.
        while True:
            await asyncio.sleep(self.ttl_s / 3)
            for record in list(self.local.values()):
                self._queue.put_nowait(("put", record))

    async def end_calls_of(self, sub: str, calls: CallManager) -> int:
        """Ends this node's live calls of `sub` (it was revoked); returns how many."""
        ending = []
        for record in list(self.local.values()):
            session = calls.get(record.call_id)
            if record.sub == sub and session is not None and not session.closed:
                ending.append(session.end("revoked"))
        await asyncio.gather(*ending, return_exceptions=True)
        return len(ending)
