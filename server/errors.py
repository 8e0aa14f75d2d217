"""The errors Hark's domain raises, named for what went wrong, not for HTTP.

The call, cluster and engine code knows nothing of status codes; `signaling.errors` maps
each kind to one (and to OpenAI's error body), so the same refusal reads the same over
HTTP, a WebSocket or a log line. A leaf module: it imports nothing of the project.
"""

from __future__ import annotations


class HarkError(Exception):
    """A refusal with a stable `code` for clients, a message that says how to fix it, and
    optionally the parameter at fault and how soon a retry may work."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        param: str | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param
        self.retry_after_s = retry_after_s


class InvalidInput(HarkError):
    """The request itself is wrong (a malformed offer, a bad value)."""


class NotFound(HarkError):
    """No such call, item or conversation (or not one the caller may see)."""


class LimitReached(HarkError):
    """A per-user or per-key limit: the caller has too much going on; retry later."""


class Overloaded(HarkError):
    """The node cannot take more work now (full, or still loading); another may."""


class Unavailable(HarkError):
    """Something Hark depends on (the shared state) cannot be reached."""
