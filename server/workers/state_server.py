"""The front's shared state, served to its workers over a unix socket (no Redis needed).

The front owns one `MemoryState`; every worker's `LocalState` forwards each call to it,
so single-use tokens, rate limits, per-sub call caps and revocations hold across all the
node's workers exactly as they hold inside one process. The socket lives in a private
directory (mode 0700) of the front's, so only the node's own user reaches it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from server.cluster.shared_state import MemoryState, Subscriber
from server.workers.state_protocol import MAX_LINE, OPS, encode

log = logging.getLogger("hark.workers.state")


class StateServer:
    def __init__(self, path: str, state: MemoryState | None = None) -> None:
        self.path = path
        self.state = state or MemoryState()
        self._server: asyncio.AbstractServer | None = None
        self._peers: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_unix_server(self._serve, self.path, limit=MAX_LINE)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._peers):
            task.cancel()
        await asyncio.gather(*self._peers, return_exceptions=True)
        await self.state.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._peers.add(task)
        channels: dict[str, Subscriber] = {}
        lock = asyncio.Lock()

        async def send(message: dict[str, Any]) -> None:
            async with lock:
                writer.write(encode(message))
                await writer.drain()

        async def forward(channel: str, message: str) -> None:
            if channel in channels:
                with contextlib.suppress(ConnectionError):
                    await send({"channel": channel, "message": message})

        try:
            while line := await reader.readline():
                request = json.loads(line)
                op, args, rid = request.get("op"), request.get("args", []), request.get("id")
                if op == "subscribe":
                    channel = str(args[0])
                    if channel not in channels:
                        channels[channel] = lambda m, c=channel: forward(c, m)
                        self.state.subscribe(channel, channels[channel])
                    await send({"id": rid, "result": None})
                    continue
                if op not in OPS:
                    await send({"id": rid, "error": f"unknown op {op!r}"})
                    continue
                result = await getattr(self.state, op)(*args)
                await send({"id": rid, "result": result})
        except (ConnectionError, ValueError, asyncio.LimitOverrunError) as exc:
            log.warning("a worker's state connection failed: %s", exc)
        finally:
            for channel, handler in channels.items():  # a restarted worker subscribes anew
                self.state.unsubscribe(channel, handler)
            channels.clear()
            self._peers.discard(task)
            writer.close()
