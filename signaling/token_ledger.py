"""What a token's signature cannot say: whether it was already used, or its user revoked.

Single use: a realtime secret's `jti` is claimed (SET NX with an expiry equal to the
secret's remaining lifetime) when it opens a call; a second claim on any node sharing the
state fails with 401 `token_already_used`. Revocation: a companion app revokes a `sub`
(the user logged out); every token of that sub issued before the revocation is refused,
and every node is told over pub/sub so it can end the sub's live calls. Each node keeps
the revocations in memory too, so checking an operator token needs no round trip.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable

from server.cluster.shared_state import SharedState
from signaling.client_secrets import ClientSecretClaims
from signaling.errors import unauthorized

log = logging.getLogger("hark.tokens")

CHANNEL = "revocations"
# How long a revocation is remembered: longer than any token it must refuse can live.
REVOCATION_TTL_S = 30 * 24 * 3600

OnRevoked = Callable[[str], Awaitable[int]]


class TokenLedger:
    def __init__(self, state: SharedState, leeway_s: float = 5.0) -> None:
        self.state = state
        self._leeway = leeway_s
        self._revoked: dict[str, float] = {}
        self._on_revoked: list[OnRevoked] = []

    async def start(self) -> None:
        """Loads the revocations other nodes made and listens for new ones."""
        for key, value in (await self.state.values("revoked:")).items():
            self._remember(key[len("revoked:") :], float(value))
        self.state.subscribe(CHANNEL, self._on_message)

    def on_revoked(self, handler: OnRevoked) -> None:
        """`handler(sub)` ends the sub's calls on this node and returns how many it ended."""
        self._on_revoked.append(handler)

    def _remember(self, sub: str, at: float) -> None:
        self._revoked[sub] = max(at, self._revoked.get(sub, 0.0))

    async def _on_message(self, message: str) -> None:
        try:
            data = json.loads(message)
            sub, at = str(data["sub"]), float(data["at"])
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring a malformed revocation message")
            return
        self._remember(sub, at)
        await self._end_calls(sub)

    async def _end_calls(self, sub: str) -> int:
        ended = 0
        for handler in self._on_revoked:
            try:
                ended += await handler(sub)
            except Exception:
                log.exception("ending the calls of a revoked sub failed")
        return ended

    def is_revoked(self, claims: ClientSecretClaims) -> bool:
        at = self._revoked.get(claims.sub) if claims.sub is not None else None
        return at is not None and claims.issued_at <= at

    def check_not_revoked(self, claims: ClientSecretClaims) -> None:
        if self.is_revoked(claims):
            raise unauthorized("client_secret_revoked", "This token's user was signed out")

    async def check_fresh(self, claims: ClientSecretClaims) -> None:
        """Authoritative revocation check against the shared state (for opening calls)."""
        if claims.sub is not None:
            value = await self.state.get_value("revoked:" + claims.sub)
            if value is not None:
                self._remember(claims.sub, float(value))
        self.check_not_revoked(claims)

    async def claim(self, claims: ClientSecretClaims) -> None:
        """Marks a realtime secret used; raises 401 `token_already_used` the second time."""
        ttl = max(1.0, claims.expires_at - time.time() + self._leeway)
        if not await self.state.claim_once("jti:" + claims.jti, ttl):
            raise unauthorized(
                "token_already_used",
                "This client secret has already opened a call; mint a new one per call",
            )

    async def revoke(self, sub: str) -> tuple[float, int]:
        """Refuses the sub's tokens issued until now; returns (revoked_at, calls ended here)."""
        at = round(time.time(), 3)
        self._remember(sub, at)
        await self.state.set_value("revoked:" + sub, repr(at), REVOCATION_TTL_S)
        ended = await self._end_calls(sub)
        # Other nodes end theirs; this node ignores its own echo (its calls are gone).
        await self.state.publish(CHANNEL, json.dumps({"sub": sub, "at": at}))
        return at, ended
