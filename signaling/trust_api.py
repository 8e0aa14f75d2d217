"""Hark's own endpoints for trust and operations (outside the OpenAI surface).

POST /hark/admin/tokens   admin key → an operator (or realtime) token
POST /hark/revocations    API key or admin key, {"sub"} → that user's tokens refused and
                          live calls ended on every node
GET  /hark/diagnostics    operator → tasks, peer connections, open fds, RSS, calls
GET  /openapi.json        the OpenAPI description of the HTTP API
"""

from __future__ import annotations

import asyncio
import gc
import os
from pathlib import Path
from typing import Any

from aiohttp import web
from aiortc import RTCPeerConnection

from server.calls.runtime import NodeRuntime
from server.cluster.registry import CallRegistry
from server.config import Config
from signaling.auth import Authenticator
from signaling.errors import ApiError
from signaling.openapi import openapi_handler, openapi_json
from signaling.token_ledger import REVOCATION_TTL_S, TokenLedger

MAX_SUB_CHARS = 256
MAX_TOKEN_TTL_S = REVOCATION_TTL_S


def _sub(body: dict[str, Any], *, required: bool) -> str | None:
    if "sub" not in body and not required:
        return None
    sub = body.get("sub")
    if not isinstance(sub, str) or not sub or len(sub) > MAX_SUB_CHARS:
        raise ApiError(
            400,
            "invalid_value",
            f"sub must be a non-empty string of at most {MAX_SUB_CHARS} chars",
            param="sub",
        )
    return sub


def process_counters() -> dict[str, Any]:
    """What a leak would grow: tasks, live peer connections, open fds, resident memory."""
    gc.collect()
    pcs = sum(1 for obj in gc.get_objects() if isinstance(obj, RTCPeerConnection))
    fds = len(os.listdir("/proc/self/fd")) if Path("/proc/self/fd").exists() else -1
    rss_kb = -1
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss_kb = int(line.split()[1])
    return {
        "tasks": len(asyncio.all_tasks()),
        "peer_connections": pcs,
        "open_fds": fds,
        "rss_kb": rss_kb,
        "threads": len(os.listdir("/proc/self/task")) if Path("/proc/self/task").exists() else -1,
    }


class TrustHttpApi:
    def __init__(
        self,
        config: Config,
        auth: Authenticator,
        ledger: TokenLedger,
        registry: CallRegistry,
        runtime: NodeRuntime,
        json_body: Any,
        openapi: dict[str, Any] | None = None,
    ) -> None:
        self.config = config
        self.auth = auth
        self.ledger = ledger
        self.registry = registry
        self.runtime = runtime
        self._json_body = json_body
        self._openapi = openapi

    def register(self, app: web.Application) -> None:
        r = app.router
        r.add_post("/hark/admin/tokens", self.admin_tokens)
        r.add_post("/hark/revocations", self.revoke)
        r.add_get("/hark/diagnostics", self.diagnostics)
        r.add_get(
            "/openapi.json",
            openapi_json if self._openapi is None else openapi_handler(self._openapi),
        )

    async def admin_tokens(self, request: web.Request) -> web.Response:
        self.auth.require_admin(request)
        body = await self._json_body(request)
        scope = body.get("scope", "operator")
        if scope not in ("operator", "realtime"):
            raise ApiError(
                400, "invalid_value", "scope must be 'operator' or 'realtime'", param="scope"
            )
        ttl = body.get("ttl_seconds", 3600)
        if isinstance(ttl, float) and ttl.is_integer():
            ttl = int(ttl)
        if isinstance(ttl, bool) or not isinstance(ttl, int) or not 10 <= ttl <= MAX_TOKEN_TTL_S:
            raise ApiError(
                400,
                "invalid_value",
                f"ttl_seconds must be an integer in [10, {MAX_TOKEN_TTL_S}]",
                param="ttl_seconds",
            )
        sub = _sub(body, required=False)
        value, expires_at = self.auth.secrets.mint({}, ttl, sub, scope=scope)
        return web.json_response(
            {"value": value, "expires_at": expires_at, "scope": scope, "sub": sub}
        )

    async def revoke(self, request: web.Request) -> web.Response:
        self.auth.require_key_or_admin(request)
        sub = _sub(await self._json_body(request), required=True)
        assert sub is not None
        revoked_at, ended = await self.ledger.revoke(sub)
        return web.json_response({"sub": sub, "revoked_at": revoked_at, "calls_ended": ended})

    async def diagnostics(self, request: web.Request) -> web.Response:
        self.auth.require_operator(request)
        body = {
            "node": self.config.node_id,
            "shared_state": self.ledger.state.name,
            "calls": self.runtime.live_calls,
            "registered_calls": len(self.registry.local),
            "cluster_calls": len(await self.registry.all_calls()),
            **process_counters(),
        }
        return web.json_response(body)
