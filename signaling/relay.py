"""Passing a request, or a WebSocket, on to another Hark process as it came.

Two places forward: a node's front hands requests to its workers
(`server/workers/proxy.py`), and a node hands a call's requests to the node that holds
it (`signaling/forwarding.py`). Both need the same three things, kept here once: which
headers belong to one hop only, a WebSocket relayed both ways with its close code and
reason, and the body of a refused WebSocket handshake (aiohttp's client drops it, so it
is asked for again as plain HTTP: a refusal comes before any upgrade, so asking twice
changes nothing).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Collection, Iterable
from dataclasses import dataclass

import aiohttp
from aiohttp import WSMsgType, web

# Headers of one hop, never passed on (RFC 9110 §7.6.1), and those aiohttp sets itself.
HOP_BY_HOP = frozenset(
    {
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
)
# A WebSocket handshake's own headers: the relay makes its own handshake.
WEBSOCKET_HANDSHAKE = frozenset(
    {
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-extensions",
        "sec-websocket-accept",
        "sec-websocket-protocol",
    }
)
RELAY_CLOSE_WAIT_S = 5.0  # after one side closed, for the other to see it


def end_to_end(
    headers: Iterable[tuple[str, str]], drop: Collection[str] = HOP_BY_HOP
) -> list[tuple[str, str]]:
    """The headers to pass on (a list of pairs keeps repeated headers), names in `drop`
    (lower case) left out."""
    return [(k, v) for k, v in headers if k.lower() not in drop]


def offered_protocols(request: web.Request) -> list[str]:
    """The WebSocket subprotocols the client offered (Realtime clients put their
    credentials in one), to offer the same upstream."""
    offered = request.headers.get("Sec-WebSocket-Protocol", "")
    return [p.strip() for p in offered.split(",") if p.strip()]


@dataclass
class Upstream:
    """An answer read in full (an offer's answer is small; it may be retried)."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def response(self, drop: Collection[str] = HOP_BY_HOP) -> web.Response:
        return web.Response(
            status=self.status, headers=end_to_end(self.headers, drop), body=self.body
        )


async def handshake_refusal(
    http: aiohttp.ClientSession,
    url: str,
    headers: Iterable[tuple[str, str]],
    timeout: aiohttp.ClientTimeout | None = None,
) -> Upstream:
    """What the upstream answers a WebSocket handshake it refused, asked again as GET
    with `headers` (the caller's choice: with the upgrade's own headers the upstream
    judges it as the handshake it refused; an upgrade it accepts this time is a 101
    with no body)."""
    async with http.get(
        url, headers=list(headers), allow_redirects=False, timeout=timeout
    ) as answer:
        return Upstream(answer.status, list(answer.headers.items()), await answer.read())


async def accept_like(
    request: web.Request, upstream: aiohttp.ClientWebSocketResponse
) -> web.WebSocketResponse:
    """The client's side of the relay, with the subprotocol the upstream chose."""
    client = web.WebSocketResponse(
        protocols=(upstream.protocol,) if upstream.protocol else (),
        compress=False,
        max_msg_size=0,
        autoping=True,
        heartbeat=20.0,
    )
    try:
        await client.prepare(request)
    except BaseException:
        await upstream.close()
        raise
    return client


async def relay_websocket(
    client: web.WebSocketResponse, upstream: aiohttp.ClientWebSocketResponse
) -> None:
    """Messages both ways until either side closes; the close code and reason travel
    too (a sideband learns `call ended: <reason>` as if it were joined directly)."""
    tasks = [
        asyncio.ensure_future(_pump(client, upstream)),
        asyncio.ensure_future(_pump(upstream, client)),
    ]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        # One side closed: the other pump sees the close it was sent and ends too.
        await asyncio.wait(tasks, timeout=RELAY_CLOSE_WAIT_S)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await upstream.close()
        with contextlib.suppress(Exception):
            await client.close()


async def _pump(
    source: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
    sink: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
) -> None:
    reason = b""
    while True:
        message = await source.receive()
        if message.type == WSMsgType.TEXT:
            await sink.send_str(message.data)
        elif message.type == WSMsgType.BINARY:
            await sink.send_bytes(message.data)
        elif message.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
            if message.type == WSMsgType.CLOSE and isinstance(message.extra, str):
                reason = message.extra.encode()[:120]
            break
        elif message.type == WSMsgType.ERROR:
            break
    with contextlib.suppress(Exception):
        await sink.close(code=source.close_code or aiohttp.WSCloseCode.OK, message=reason)
