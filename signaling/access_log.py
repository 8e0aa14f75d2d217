"""One structured log line per HTTP request: method, path, status, time, client, call id.

Outermost middleware, so it sees the final status of refusals too. Never logs headers,
bodies or query strings (credentials and SDP stay out of the logs). Each response gets
an `X-Request-Id` that matches its log line.
"""

from __future__ import annotations

import logging
import secrets
import time

from aiohttp import web

from server.ops.log_format import log_event
from signaling.errors import Handler

log = logging.getLogger("hark.http")


@web.middleware
async def access_log_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    request_id = "req_" + secrets.token_hex(8)
    started = time.monotonic()
    status = 500
    call_id = request.match_info.get("call_id")
    try:
        response = await handler(request)
        status = response.status
        location = response.headers.get("Location", "")
        if location.startswith("/v1/realtime/calls/"):
            call_id = location.rsplit("/", 1)[-1]
        response.headers["X-Request-Id"] = request_id
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        log_event(
            log,
            "http.request",
            request_id=request_id,
            method=request.method,
            path=request.path[:200],
            status=status,
            ms=round((time.monotonic() - started) * 1000, 1),
            client=request.remote,
            call_id=call_id[:64] if call_id else None,
        )
