"""Fixed-window rate limits on minting and on opening calls, per API key and per address.

Counters live in the shared state, so with Redis a key's budget is shared by every node.
A refusal is 429 `rate_limit_exceeded` with `Retry-After` set to the end of the window.
A limit of 0 means unlimited.
"""

from __future__ import annotations

import time

from server.cluster.shared_state import SharedState
from signaling.errors import ApiError

WINDOW_S = 60


class RateLimiter:
    def __init__(self, state: SharedState, window_s: int = WINDOW_S) -> None:
        self.state = state
        self.window_s = window_s

    async def hit(self, action: str, who: str, limit: int) -> None:
        """Counts one `action` by `who`; raises 429 past `limit` per window."""
        if limit <= 0:
            return
        now = time.time()
        window = int(now // self.window_s)
        count = await self.state.count_hit(f"rate:{action}:{who}:{window}", self.window_s)
        if count > limit:
            retry = max(1, int((window + 1) * self.window_s - now) + 1)
            raise ApiError(
                429,
                "rate_limit_exceeded",
                f"Too many {action} requests: the limit is {limit} per {self.window_s} s; "
                f"retry in {retry} s",
                type="rate_limit_error",
                headers={"Retry-After": str(retry)},
            )
