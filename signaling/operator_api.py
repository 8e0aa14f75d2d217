"""The operator's HTTP face: live calls, one call's timeline, a live stream, hang-up, metrics.

GET    /v1/operator/calls            live calls with their current quality, worst first
GET    /v1/operator/calls/{call_id}  one call's timeline: quality samples, turns, client stats
DELETE /v1/operator/calls/{call_id}  end a call (reason `operator`), 204
GET    /v1/operator/stream           Server-Sent Events: a snapshot, then changes as they happen
GET    /metrics                      Prometheus exposition

All need operator credentials (`Authorization: Bearer …`). Browsers' EventSource cannot set
headers, so the stream alone also takes the token as `?token=`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from aiohttp import web

from server.calls.runtime import NodeRuntime
from server.ops.monitor import CallMonitor
from signaling.auth import Authenticator
from signaling.errors import ApiError

HEARTBEAT_S = 15.0
OPERATOR_END_REASON = "operator"


class OperatorApi:
    def __init__(self, auth: Authenticator, monitor: CallMonitor, runtime: NodeRuntime) -> None:
        self.auth = auth
        self.monitor = monitor
        self.runtime = runtime
        self._streams: set[asyncio.Event] = set()

    def register(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/v1/operator/calls", self.list_calls)
        r.add_get("/v1/operator/calls/{call_id}", self.call_timeline)
        r.add_delete("/v1/operator/calls/{call_id}", self.end_call)
        r.add_get("/v1/operator/stream", self.stream)
        r.add_get("/metrics", self.metrics)

    def close_streams(self) -> None:
        """Ends every open live stream (server shutdown)."""
        for stop in self._streams:
            stop.set()

    def _authorize(self, request: web.Request, *, allow_query: bool = False) -> None:
        token = request.query.get("token", "") if allow_query else ""
        if token and "Authorization" not in request.headers:
            headers = {**request.headers, "Authorization": f"Bearer {token}"}
            request = request.clone(headers=headers)
        self.auth.require_operator(request)

    def _not_found(self, call_id: str) -> ApiError:
        return ApiError(404, "call_not_found", f"No call with id '{call_id[:64]}'")

    async def list_calls(self, request: web.Request) -> web.Response:
        self._authorize(request)
        return web.json_response({"object": "list", "data": self.monitor.summaries()})

    async def call_timeline(self, request: web.Request) -> web.Response:
        self._authorize(request)
        call_id = request.match_info["call_id"]
        record = self.monitor.get(call_id)
        if record is None:
            raise self._not_found(call_id)
        return web.json_response(record.timeline())

    async def end_call(self, request: web.Request) -> web.Response:
        self._authorize(request)
        call_id = request.match_info["call_id"]
        calls = self.runtime.calls
        session = calls.get(call_id) if calls is not None else None
        if session is not None:
            await session.close(OPERATOR_END_REASON)
            return web.Response(status=204)
        if self.monitor.get(call_id) is None:
            raise self._not_found(call_id)
        return web.Response(status=204)  # already over: ending it again is fine

    async def metrics(self, request: web.Request) -> web.Response:
        self._authorize(request)
        body = self.monitor.metrics.exposition()
        return web.Response(body=body, headers={"Content-Type": self.monitor.metrics.content_type})

    async def stream(self, request: web.Request) -> web.StreamResponse:
        self._authorize(request, allow_query=True)
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        subscription = self.monitor.subscribe()
        stop = asyncio.Event()
        self._streams.add(stop)
        stopped = asyncio.ensure_future(stop.wait())

        async def send(message: dict[str, Any]) -> None:
            await response.write(f"data: {json.dumps(message)}\n\n".encode())

        try:
            while not stop.is_set():
                if subscription.needs_snapshot:
                    subscription.needs_snapshot = False
                    await send(self.monitor.snapshot())
                getter = asyncio.ensure_future(subscription.queue.get())
                done, _ = await asyncio.wait(
                    {getter, stopped}, timeout=HEARTBEAT_S, return_when=asyncio.FIRST_COMPLETED
                )
                if getter not in done:
                    getter.cancel()
                    if not stop.is_set():
                        await response.write(b": keep-alive\n\n")
                    continue
                message = getter.result()
                if message["type"] != "resync":
                    await send(message)
        except (ConnectionResetError, ConnectionError):
            pass
        finally:
            stopped.cancel()
            self._streams.discard(stop)
            self.monitor.unsubscribe(subscription)
        with contextlib.suppress(ConnectionError):
            await response.write_eof()
        return response
