"""Who is calling: an API key holder (a backend) or a client secret holder (a device).

API keys mint client secrets and may also open calls from a server. Client secrets only
open calls, with the session configuration they were minted for. Keys are compared in
constant time.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

from signaling.client_secrets import PREFIX, ClientSecrets
from signaling.errors import unauthorized


@dataclass(frozen=True)
class Caller:
    kind: Literal["api_key", "client_secret"]
    # Stable id of the credential: a key digest or the secret's `jti`.
    principal: str
    session: dict[str, Any] = field(default_factory=dict)
    sub: str | None = None


def bearer_token(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorized(
            "missing_authorization",
            "Missing credentials: send 'Authorization: Bearer <API key or ek_ client secret>'",
        )
    return token.strip()


class Authenticator:
    def __init__(self, api_keys: tuple[str, ...], secrets: ClientSecrets) -> None:
        self._keys = [key.encode() for key in api_keys]
        self.secrets = secrets

    def _api_key(self, token: str) -> Caller | None:
        candidate = token.encode()
        # Compare against every key so timing does not reveal which one matched.
        matched = [hmac.compare_digest(candidate, key) for key in self._keys]
        if not any(matched):
            return None
        digest = hashlib.sha256(candidate).hexdigest()[:16]
        return Caller(kind="api_key", principal=f"key:{digest}")

    def require_api_key(self, request: web.Request) -> Caller:
        token = bearer_token(request)
        caller = self._api_key(token)
        if caller is None:
            if token.startswith(PREFIX):
                raise unauthorized(
                    "api_key_required", "This endpoint needs an API key, not a client secret"
                )
            raise unauthorized("invalid_api_key", "Incorrect API key provided")
        return caller

    def require_caller(self, request: web.Request, *, allow_expired: bool = False) -> Caller:
        """An API key or a valid client secret (`allow_expired` for hanging up a call)."""
        token = bearer_token(request)
        if token.startswith(PREFIX):
            claims = self.secrets.verify(token, allow_expired=allow_expired)
            return Caller("client_secret", f"jti:{claims.jti}", claims.session, claims.sub)
        caller = self._api_key(token)
        if caller is None:
            raise unauthorized("invalid_api_key", "Incorrect API key or client secret provided")
        return caller

    def require_operator(self, request: web.Request) -> Caller:
        """Operator endpoints (calls dashboard, metrics).

        Temporary: accepts API keys only. Issue 4 ("Trust") replaces this with the real
        check (an admin API key or a token with scope `operator`).
        """
        return self.require_api_key(request)
