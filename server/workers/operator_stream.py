"""The operator's live stream (`/v1/operator/stream`, Server-Sent Events) of the whole node.

The front opens the stream on every ready worker with the operator's own credentials and
sends on one stream: first a single `snapshot` of all workers' calls (once each worker
has sent its own), then every worker's events as they come, and a merged snapshot again
whenever a worker sends a new one. Each worker's live calls are followed from its events
(`call.started`, `calls.updated`, `call.ended`) for those snapshots. When a worker's
stream ends (it stopped or restarted) the merged stream ends too, so the dashboard's
EventSource reconnects and gets a fresh snapshot of the node.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from aiohttp import web

from server.ops.monitor import worst_first
from server.workers.proxy import Upstream, WorkerProxy
from server.workers.supervisor import Worker

WATCH_S = 1.0


class _WorkerCalls:
    """One worker's live calls, as its stream told them."""

    def __init__(self) -> None:
        self.calls: dict[str, dict[str, Any]] = {}
        self.interval_s: float | None = None
        self.synced = False

    def apply(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "snapshot":
            self.calls = {c["id"]: c for c in event.get("calls", [])}
            self.interval_s = event.get("interval_s")
            self.synced = True
        elif kind == "call.started":
            self.calls[event["call"]["id"]] = event["call"]
        elif kind == "calls.updated":
            for call in event.get("calls", []):
                self.calls[call["id"]] = call
        elif kind == "call.ended":
            self.calls.pop(event.get("call_id", ""), None)


def _events(buffer: bytes) -> tuple[list[bytes], bytes]:
    """Complete SSE events (`…\\n\\n`) in `buffer`, and what is left."""
    *complete, rest = buffer.split(b"\n\n")
    return complete, rest


async def merged_stream(
    request: web.Request, proxy: WorkerProxy, everyone: list[Worker]
) -> web.StreamResponse:
    """`everyone`: the node's workers; the stream follows those ready now, and ends when
    that set changes (a worker restarted or became ready) so the client reconnects."""
    workers = [w for w in everyone if w.ready]
    views = {w.index: _WorkerCalls() for w in workers}
    queue: asyncio.Queue[tuple[int, bytes | None]] = asyncio.Queue()
    opened: list[Any] = []
    for worker in workers:
        upstream = await proxy.http.get(
            worker.url + request.rel_url.path_qs, headers=proxy.headers(request)
        )
        opened.append(upstream)
        if upstream.status != 200:
            refused = Upstream(
                upstream.status, list(upstream.headers.items()), await upstream.read()
            )
            for other in opened:
                other.release()
            return refused.response()

    async def read(index: int, upstream: Any) -> None:
        buffer = b""
        with contextlib.suppress(Exception):
            async for chunk in upstream.content.iter_any():
                events, buffer = _events(buffer + chunk)
                for event in events:
                    await queue.put((index, event))
        await queue.put((index, None))

    async def watch() -> None:
        following = {(w.index, w.started_at) for w in workers}
        while {(w.index, w.started_at) for w in everyone if w.ready} == following:  # noqa: ASYNC110
            await asyncio.sleep(WATCH_S)
        await queue.put((-1, None))

    readers = [
        asyncio.create_task(read(w.index, up)) for w, up in zip(workers, opened, strict=True)
    ]
    readers.append(asyncio.create_task(watch()))
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)

    async def snapshot() -> None:
        calls = sorted((c for v in views.values() for c in v.calls.values()), key=worst_first)
        interval = next((v.interval_s for v in views.values() if v.interval_s), None)
        message = {"type": "snapshot", "interval_s": interval, "calls": calls}
        await response.write(f"data: {json.dumps(message)}\n\n".encode())

    try:
        while True:
            index, raw = await queue.get()
            if raw is None:
                break  # a worker's stream ended: end ours, the client reconnects
            data = b"".join(
                line[5:].strip() for line in raw.split(b"\n") if line.startswith(b"data:")
            )
            if not data:
                await response.write(raw + b"\n\n")  # a keep-alive comment
                continue
            event = json.loads(data)
            was_synced = all(v.synced for v in views.values())
            views[index].apply(event)
            if event.get("type") == "snapshot":
                if all(v.synced for v in views.values()):
                    await snapshot()
            elif was_synced:
                await response.write(raw + b"\n\n")
    except (ConnectionError, ValueError):
        pass
    finally:
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        for upstream in opened:
            upstream.release()
    with contextlib.suppress(ConnectionError):
        await response.write_eof()
    return response
