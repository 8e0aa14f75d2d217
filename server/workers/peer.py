"""Who the client is, as a worker behind the front sees it.

A worker's TCP peer is always the front (127.0.0.1), so per-address rate limits and
logs would lump every client together. The front sends the client's address in
`X-Forwarded-For` with the node's private token (`HARK_FRONT_TOKEN`, random per run, known
only to the front and its workers); a worker takes the address only with that token, so a
local process cannot pose as another client by setting the header itself.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from aiohttp import web

FORWARDED_FOR = "X-Forwarded-For"
FRONT_TOKEN_HEADER = "X-Hark-Front"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def front_peer_middleware(
    token: str,
) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        sent = request.headers.get(FRONT_TOKEN_HEADER, "")
        address = request.headers.get(FORWARDED_FOR, "").split(",")[0].strip()
        if sent and address and hmac.compare_digest(sent.encode(), token.encode()):
            request = request.clone(remote=address)
        return await handler(request)

    return middleware
