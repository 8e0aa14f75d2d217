"""Forwarding one request, or one WebSocket, from the front to a worker, unchanged.

The worker sees the client's method, path, query, headers and body, plus who the client
is (`X-Forwarded-For`, trusted only with the node's private `X-Hark-Front` token, see
`peer.py`), so its rate limits per address and its error bodies are what a single
process gives. WebSocket frames are relayed both ways as they come, and a close on
either side closes the other with the same code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp
from aiohttp import web

from server.workers.peer import FORWARDED_FOR, FRONT_TOKEN_HEADER
from signaling.relay import (
    HOP_BY_HOP,
    WEBSOCKET_HANDSHAKE,
    Upstream,
    accept_like,
    end_to_end,
    handshake_refusal,
    offered_protocols,
    relay_websocket,
)

__all__ = ["Upstream", "WorkerProxy"]
OWN = {FORWARDED_FOR.lower(), FRONT_TOKEN_HEADER.lower()}  # only the front sets these


class WorkerProxy:
    def __init__(self, front_token: str) -> None:
        self.front_token = front_token
        self._http: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._http = aiohttp.ClientSession(
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=5),
        )

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()

    @property
    def http(self) -> aiohttp.ClientSession:
        assert self._http is not None, "WorkerProxy.start() first"
        return self._http

    def headers(
        self, request: web.Request, drop: frozenset[str] = HOP_BY_HOP
    ) -> list[tuple[str, str]]:
        kept = end_to_end(request.headers.items(), drop | OWN)
        kept.append((FORWARDED_FOR, request.remote or ""))
        kept.append((FRONT_TOKEN_HEADER, self.front_token))
        return kept

    def _outgoing(self, request: web.Request, body: bytes | None) -> dict[str, Any]:
        """The worker's request: `body` if read already, else the client's body streamed
        on as it arrives (uploads: the worker's own size limits apply, not the front's)."""
        if body is not None:
            return {"headers": self.headers(request), "data": body}
        if not request.body_exists:
            return {"headers": self.headers(request), "data": None}
        return {
            "headers": self.headers(request, HOP_BY_HOP - {"content-length"}),
            "data": request.content.iter_any(),
        }

    async def fetch(self, request: web.Request, base: str, body: bytes | None) -> Upstream:
        """The worker's whole answer to `request` (with `body`, or the client's streamed
        body when None), not yet sent on."""
        async with self.http.request(
            request.method,
            base + request.rel_url.path_qs,
            allow_redirects=False,
            **self._outgoing(request, body),
        ) as upstream:
            payload = await upstream.read()
            return Upstream(upstream.status, list(upstream.headers.items()), payload)

    async def stream(
        self, request: web.Request, base: str, body: bytes | None
    ) -> web.StreamResponse:
        """Sends the worker's answer on as it arrives (recordings, event streams)."""
        async with self.http.request(
            request.method,
            base + request.rel_url.path_qs,
            allow_redirects=False,
            **self._outgoing(request, body),
        ) as upstream:
            response = web.StreamResponse(
                status=upstream.status, headers=end_to_end(upstream.headers.items())
            )
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response

    async def websocket(
        self, request: web.Request, base: str, opened: Callable[[], None] | None = None
    ) -> web.StreamResponse:
        """Opens the same WebSocket on the worker, then relays; a refused handshake gives
        the client the worker's own status and error body. `opened`: called once the
        worker has accepted it."""
        url = "ws" + base.removeprefix("http") + request.rel_url.path_qs
        headers = self.headers(request, HOP_BY_HOP | WEBSOCKET_HANDSHAKE)
        try:
            upstream = await self.http.ws_connect(
                url,
                headers=headers,
                protocols=offered_protocols(request),
                max_msg_size=0,
                autoping=True,
            )
        except aiohttp.WSServerHandshakeError:
            # Asked again with the upgrade's headers: the worker refuses it the same way.
            again = end_to_end(self.headers(request, frozenset()), {"content-length"})
            refused = await handshake_refusal(self.http, base + request.rel_url.path_qs, again)
            return refused.response()
        if opened is not None:
            opened()
        client = await accept_like(request, upstream)
        await relay_websocket(client, upstream)
        return client
