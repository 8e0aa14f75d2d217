"""Forwarding one request, or one WebSocket, from the front to a worker, unchanged.

The worker sees the client's method, path, query, headers and body, plus who the client
is (`X-Forwarded-For`, trusted only with the node's private `X-Hark-Front` token, see
`peer.py`), so its rate limits per address and its error bodies are what a single
process gives. WebSocket frames are relayed both ways as they come, and a close on
either side closes the other with the same code.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from server.workers.peer import FORWARDED_FOR, FRONT_TOKEN_HEADER

# Headers of one hop, never forwarded (RFC 9110 §7.6.1), and those aiohttp sets itself.
HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
}
WS_OWN = {"sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions"}


@dataclass
class Upstream:
    """A worker's answer read in full (an offer's answer is small; it may be retried)."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def response(self) -> web.Response:
        return web.Response(
            status=self.status, headers=_response_headers(self.headers), body=self.body
        )


def _response_headers(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    # aiohttp's Response takes a MultiDict-like; a list of pairs keeps repeated headers.
    return [(k, v) for k, v in headers if k.lower() not in HOP]


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

    def headers(self, request: web.Request, drop: set[str] = HOP) -> list[tuple[str, str]]:
        kept = [
            (k, v)
            for k, v in request.headers.items()
            if k.lower() not in drop
            and k.lower() not in (FORWARDED_FOR.lower(), FRONT_TOKEN_HEADER.lower())
        ]
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
            "headers": self.headers(request, HOP - {"content-length"}),
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
                status=upstream.status, headers=_response_headers(list(upstream.headers.items()))
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
        protocols = [
            p.strip()
            for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",")
            if p.strip()
        ]
        drop = HOP | WS_OWN | {"sec-websocket-protocol"}
        url = "ws" + base.removeprefix("http") + request.rel_url.path_qs
        try:
            upstream = await self.http.ws_connect(
                url,
                headers=self.headers(request, drop),
                protocols=protocols,
                max_msg_size=0,
                autoping=True,
            )
        except aiohttp.WSServerHandshakeError:
            refused = await self.fetch_handshake(request, base)
            return refused.response()
        if opened is not None:
            opened()
        client = web.WebSocketResponse(
            protocols=[upstream.protocol] if upstream.protocol else (), max_msg_size=0
        )
        await client.prepare(request)
        await _relay(client, upstream)
        return client

    async def fetch_handshake(self, request: web.Request, base: str) -> Upstream:
        """The worker's refusal of a WebSocket handshake, asked again as plain HTTP (a
        refusal happens before the upgrade, so asking twice changes nothing)."""
        headers = [(k, v) for k, v in self.headers(request, set()) if k.lower() != "content-length"]
        async with self.http.get(
            base + request.rel_url.path_qs, headers=headers, allow_redirects=False
        ) as upstream:
            return Upstream(upstream.status, list(upstream.headers.items()), await upstream.read())


async def _pump(
    source: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
    sink: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
) -> None:
    async for message in source:
        if message.type == aiohttp.WSMsgType.TEXT:
            await sink.send_str(message.data)
        elif message.type == aiohttp.WSMsgType.BINARY:
            await sink.send_bytes(message.data)
        elif message.type == aiohttp.WSMsgType.ERROR:
            break
    with contextlib.suppress(ConnectionError, RuntimeError):
        await sink.close(code=source.close_code or aiohttp.WSCloseCode.OK)


async def _relay(client: web.WebSocketResponse, upstream: aiohttp.ClientWebSocketResponse) -> None:
    tasks = [
        asyncio.ensure_future(_pump(client, upstream)),
        asyncio.ensure_future(_pump(upstream, client)),
    ]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        # One side closed: the other pump sees the close it was sent and ends too.
        await asyncio.wait(tasks, timeout=5)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(ConnectionError, RuntimeError):
            await upstream.close()
