"""CORS for the HTTP API, so a page on another origin can open calls (and mint secrets).

The calls endpoints (`POST /v1/realtime/calls`, the beta `POST /v1/realtime`, hang-up)
answer any origin by default when the bearer is an `ek_` client secret, as OpenAI does:
a secret is a short-lived, single-use bearer token a foreign page cannot know, so a page
that holds one is the page it was minted for (its preflight, which carries no
credentials, is answered for any origin too). `HARK_CORS_ORIGINS` narrows this to the
origins listed (`*` allows any origin everywhere). Everything else, API-key endpoints
such as `client_secrets` included, answers only the configured origins; the demo page's
secret endpoint, same-origin by design, answers none but its own page.

The headers an OpenAI client sends (`Authorization`, `Content-Type`,
`X-OpenAI-Agents-SDK`, `OpenAI-Beta`) are allowed and `Location` (the call URL) is
exposed, which a browser would otherwise hide.
"""

from __future__ import annotations

from aiohttp import web

from signaling.errors import Handler

ALLOWED_HEADERS = "Authorization, Content-Type, X-OpenAI-Agents-SDK, OpenAI-Beta"
ALLOWED_METHODS = "GET, POST, DELETE, OPTIONS"
CALLS = "/v1/realtime/calls"


def is_calls_path(path: str) -> bool:
    """A route a client secret may use: open a call (GA or beta path) or hang it up."""
    return path in (CALLS, "/v1/realtime") or path.startswith(CALLS + "/")


def _bearer(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    return header[7:].strip() if header[:7].lower() == "bearer " else ""


def cors_middleware(origins: tuple[str, ...]):
    allow_any = "*" in origins
    narrowed = bool(origins) and not allow_any

    def allowed(request: web.Request, origin: str | None, *, preflight: bool) -> bool:
        if origin is None:
            return False
        if allow_any or origin in origins:
            return True
        if narrowed or not is_calls_path(request.path):
            return False
        return preflight or _bearer(request).startswith("ek_")

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
            if not allowed(request, origin, preflight=True):
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
        if allowed(request, origin, preflight=False):
            response.headers.update(headers_for(origin or ""))
        return response

    return middleware
