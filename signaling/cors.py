"""CORS for the HTTP API, so a page on another origin can mint secrets and open calls.

Origins are allowed only when configured (`HARK_CORS_ORIGINS`, or `*`); the headers an
OpenAI client sends (`Authorization`, `Content-Type`, `X-OpenAI-Agents-SDK`) are allowed
and `Location` (the call URL) is exposed, which a browser would otherwise hide.
"""

from __future__ import annotations

from aiohttp import web

from signaling.errors import Handler

ALLOWED_HEADERS = "Authorization, Content-Type, X-OpenAI-Agents-SDK, OpenAI-Beta"
ALLOWED_METHODS = "GET, POST, DELETE, OPTIONS"


def cors_middleware(origins: tuple[str, ...]):
    allow_any = "*" in origins

    def allowed(origin: str | None) -> bool:
        return origin is not None and (allow_any or origin in origins)

    def headers_for(origin: str) -> dict[str, str]:
        return {
            "Access-Control-Allow-Origin": "*" if allow_any else origin,
            "Access-Control-Expose-Headers": "Location",
            "Vary": "Origin",
        }

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            if not allowed(origin):
                return web.Response(status=403, text="Origin not allowed")
            return web.Response(
                status=204,
                headers={
                    **headers_for(origin or ""),
                    "Access-Control-Allow-Methods": ALLOWED_METHODS,
                    "Access-Control-Allow-Headers": ALLOWED_HEADERS,
                    "Access-Control-Max-Age": "600",
                },
            )
        response = await handler(request)
        if allowed(origin):
            response.headers.update(headers_for(origin or ""))
        return response

    return middleware
