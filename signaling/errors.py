"""OpenAI-style HTTP errors: `{"error": {"type", "code", "message", "param"}}`, right status.

Client SDKs show `error.message` to developers, so every refusal says what was wrong and
how to fix it. The middleware maps the domain's errors (`server.errors`) to their status,
turns aiohttp's own refusals (404, 405, 413) into the same shape, and any unexpected
exception into a logged 500 that leaks no internals.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from server.errors import HarkError, InvalidInput, LimitReached, NotFound, Overloaded, Unavailable

log = logging.getLogger("hark.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.type = type
        self.param = param
        self.headers = headers or {}

    def body(self) -> dict[str, object]:
        return {
            "error": {
                "type": self.type,
                "code": self.code,
                "message": self.message,
                "param": self.param,
            }
        }

    def response(self) -> web.Response:
        return web.json_response(self.body(), status=self.status, headers=self.headers)


def unauthorized(code: str, message: str) -> ApiError:
    return ApiError(401, code, message, type="invalid_request_error")


# Each kind of domain error → (HTTP status, OpenAI error type). Most specific first.
_DOMAIN: list[tuple[type[HarkError], int, str]] = [
    (InvalidInput, 400, "invalid_request_error"),
    (NotFound, 404, "invalid_request_error"),
    (LimitReached, 429, "rate_limit_error"),
    (Overloaded, 503, "server_error"),
    (Unavailable, 503, "server_error"),
]


def from_domain(exc: HarkError) -> ApiError:
    """The HTTP form of a refusal the domain raised."""
    status, type_ = next(
        ((s, t) for kind, s, t in _DOMAIN if isinstance(exc, kind)), (500, "server_error")
    )
    headers = {}
    if exc.retry_after_s is not None:
        headers["Retry-After"] = str(max(1, round(exc.retry_after_s)))
    return ApiError(status, exc.code, exc.message, type=type_, param=exc.param, headers=headers)


# aiohttp's built-in refusals, re-dressed in the OpenAI shape.
_HTTP_CODES: dict[int, tuple[str, str]] = {
    404: ("not_found", "No such route: {method} {path}"),
    405: ("method_not_allowed", "Method {method} is not allowed on {path}"),
    413: ("request_too_large", "The request body is larger than the limit"),
    400: ("bad_request", "Malformed HTTP request"),
}


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return exc.response()
    except HarkError as exc:
        return from_domain(exc).response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code, template = _HTTP_CODES.get(exc.status, ("http_error", exc.reason))
        message = template.format(method=request.method, path=request.path)
        headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
        return ApiError(exc.status, code, message, headers=headers).response()
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return ApiError(
            500, "internal_error", "Internal server error; see the server log", type="server_error"
        ).response()
