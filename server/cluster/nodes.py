"""The nodes of the cluster: each node's advertised URL and state, in the shared state.

The call registry says which node holds a call; this directory says where that node is
reached (`HARK_NODE_URL`) and whether it is `starting`, `ok` or `draining`, so any node
can forward a call's requests to its owner and list the whole cluster. A node's record is
a lease refreshed every third of `HARK_REGISTRY_TTL`: a dead node drops out on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from server.cluster.shared_state import SharedState

log = logging.getLogger("hark.nodes")

NODES = "nodes"


class NodeDirectory:
    def __init__(
        self,
        shared: SharedState,
        node_id: str,
        url: str,
        *,
        ttl_s: float,
        state: Callable[[], str],
    ) -> None:
        """`state`: this node's current state (`ok`, `starting`, `draining`, …)."""
        self.shared = shared
        self.node_id = node_id
        self.url = url
        self.ttl_s = ttl_s
        self._state = state
        self._started_at = time.time()
        self._task: asyncio.Task[None] | None = None

    def _record(self) -> dict[str, str]:
        return {
            "node": self.node_id,
            "url": self.url,
            "state": self._state(),
            "started_at": f"{self._started_at:.3f}",
        }

    async def publish(self) -> None:
        """Writes this node's record now (also on a change of state, e.g. draining)."""
        await self.shared.record_put("node:" + self.node_id, self._record(), self.ttl_s)
        await self.shared.lease_add(NODES, self.node_id, self.ttl_s)

    def start(self) -> None:
        self._task = asyncio.create_task(self._heartbeat(), name="node-directory")

    def changed(self) -> None:
        """This node's state changed: publish it without waiting for the heartbeat."""
        asyncio.get_running_loop().create_task(self._publish_quietly())

    async def _publish_quietly(self) -> None:
        try:
            await self.publish()
        except Exception as exc:  # shared state down: the heartbeat retries
            log.warning("publishing node %s failed: %s", self.node_id, exc)

    async def _heartbeat(self) -> None:
        while True:
            await self._publish_quietly()
            await asyncio.sleep(self.ttl_s / 3)

    async def url_of(self, node_id: str) -> str | None:
        """Where `node_id` is reached, if it is alive and advertised one."""
        if node_id == self.node_id:
            return self.url
        record = await self.shared.record_get("node:" + node_id)
        return (record or {}).get("url") or None

    async def members(self) -> list[dict[str, str]]:
        """Every live node's record (this one included)."""
        found = []
        for node_id in await self.shared.lease_members(NODES):
            record = await self.shared.record_get("node:" + node_id)
            if record is not None:
                found.append(record)
        return found

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self.shared.lease_remove(NODES, self.node_id)
            await self.shared.record_delete("node:" + self.node_id)
