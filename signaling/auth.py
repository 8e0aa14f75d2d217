"""Who is calling: an API key holder (a backend), a token holder (a device or an operator),
or an admin.

API keys mint client secrets and may also open calls from a server. Realtime client
secrets only open calls, once each, with the session configuration they were minted for.
Operator tokens and admin keys reach the operator API; admin keys also mint operator
tokens. Keys are compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

from signaling.client_secrets import PREFIX, ClientSecretClaims, ClientSecrets
from signaling.errors import ApiError, unauthorized
from signaling.token_ledger import TokenLedger

CallerKind = Literal["api_key", "client_secret", "admin_key"]


@dataclass(frozen=True)
class Caller:
    kind: CallerKind
    # Stable id of the credential: a key digest or the token's `jti`.
    principal: str
    session: dict[str, Any] = field(default_factory=dict)
    sub: str | None = None
    # What the credential may do: "realtime", "mint", "operator", "admin".
    scopes: tuple[str, ...] = ()
    # The API key accountable for the call (itself, or the key that minted the secret).
    key: str | None = None
    claims: ClientSecretClaims | None = None


def forbidden(code: str, message: str) -> ApiError:
    return ApiError(403, code, message, type="permission_error")


def bearer_token(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorized(
            "missing_authorization",
            "Missing credentials: send 'Authorization: Bearer <API key or ek_ client secret>'",
        )
    return token.strip()


INSECURE_KEY_PROTOCOL = "openai-insecure-api-key."


def websocket_token(request: web.Request) -> str:
    """A WebSocket's credential: `Authorization: Bearer …`, or for browsers (which cannot
    set headers on a WebSocket) the subprotocol `openai-insecure-api-key.<key>`."""
    if request.headers.get("Authorization"):
        return bearer_token(request)
    for header in request.headers.getall("Sec-WebSocket-Protocol", []):
        for protocol in header.split(","):
            protocol = protocol.strip()
            if protocol.startswith(INSECURE_KEY_PROTOCOL) and len(protocol) > len(
                INSECURE_KEY_PROTOCOL
            ):
                return protocol[len(INSECURE_KEY_PROTOCOL) :]
    raise unauthorized(
        "missing_authorization",
        "Missing credentials: send 'Authorization: Bearer <API key or ek_ client secret>' "
        "or the subprotocol 'openai-insecure-api-key.<key>'",
    )


def key_principal(key: str) -> str:
    return "key:" + hashlib.sha256(key.encode()).hexdigest()[:16]


def _matches(candidate: str, keys: list[bytes]) -> bool:
    raw = candidate.encode()
    # Compare against every key so timing does not reveal which one matched.
    matched = [hmac.compare_digest(raw, key) for key in keys]
    return any(matched)


class Authenticator:
    def __init__(
        self,
        api_keys: tuple[str, ...],
        secrets: ClientSecrets,
        admin_keys: tuple[str, ...] = (),
        ledger: TokenLedger | None = None,
    ) -> None:
        self._keys = [key.encode() for key in api_keys]
        self._admin_keys = [key.encode() for key in admin_keys]
        self.secrets = secrets
        self.ledger = ledger

    def _api_key(self, token: str) -> Caller | None:
        if not _matches(token, self._keys):
            return None
        principal = key_principal(token)
        return Caller("api_key", principal, scopes=("realtime", "mint"), key=principal)

    def _admin_key(self, token: str) -> Caller | None:
        if not self._admin_keys or not _matches(token, self._admin_keys):
            return None
        principal = "admin:" + key_principal(token)[4:]
        return Caller("admin_key", principal, scopes=("operator", "admin"))

    def _token(self, token: str, *, allow_expired: bool = False) -> Caller:
        claims = self.secrets.verify(token, allow_expired=allow_expired, scope=None)
        if self.ledger is not None:
            self.ledger.check_not_revoked(claims)
        return Caller(
            "client_secret",
            f"jti:{claims.jti}",
            claims.session,
            claims.sub,
            scopes=(claims.scope,),
            key=claims.azp,
            claims=claims,
        )

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

    def require_caller(
        self, request: web.Request, *, allow_expired: bool = False, token: str | None = None
    ) -> Caller:
        """An API key or a valid realtime client secret (`allow_expired` for hanging up);
        `token` if the credential came another way than the bearer header."""
        token = token or bearer_token(request)
        if token.startswith(PREFIX):
            caller = self._token(token, allow_expired=allow_expired)
            if "realtime" not in caller.scopes:
                raise unauthorized(
                    "invalid_client_secret", "This token is not a realtime client secret"
                )
            return caller
        caller = self._api_key(token)
        if caller is None:
            raise unauthorized("invalid_api_key", "Incorrect API key or client secret provided")
        return caller

    def require_translator(self, token: str) -> Caller:
        """An API key or a `translation`-scoped client secret (a realtime one is refused)."""
        if token.startswith(PREFIX):
            caller = self._token(token)
            if "translation" not in caller.scopes:
                raise unauthorized(
                    "invalid_client_secret",
                    "This token is not a translation client secret: mint one at "
                    "POST /v1/realtime/translations/client_secrets",
                )
            return caller
        caller = self._api_key(token)
        if caller is None:
            raise unauthorized("invalid_api_key", "Incorrect API key or client secret provided")
        return caller

    def require_operator(self, request: web.Request) -> Caller:
        """An admin key or an `operator`-scoped token; 401 if unknown, 403 if not allowed."""
        token = bearer_token(request)
        if token.startswith(PREFIX):
            caller = self._token(token)
            if "operator" not in caller.scopes:
                raise forbidden(
                    "insufficient_scope", "This endpoint needs a token with scope 'operator'"
                )
            return caller
        admin = self._admin_key(token)
        if admin is not None:
            return admin
        if self._api_key(token) is not None:
            raise forbidden(
                "operator_required",
                "API keys cannot use the operator API; use an operator token or the admin key",
            )
        raise unauthorized("invalid_api_key", "Incorrect admin key or operator token provided")

    def require_sideband(self, token: str) -> Caller:
        """Who may join a live call as a sideband: an API key (its own calls only, checked
        by the caller of this), an operator token or the admin key (any call)."""
        if token.startswith(PREFIX):
            caller = self._token(token)
            if "operator" not in caller.scopes:
                raise forbidden(
                    "api_key_required",
                    "Joining a call needs the API key that opened it (or an operator token); "
                    "a client secret cannot",
                )
            return caller
        caller = self._api_key(token) or self._admin_key(token)
        if caller is None:
            raise unauthorized("invalid_api_key", "Incorrect API key or operator token provided")
        return caller

    def require_admin(self, request: web.Request) -> Caller:
        token = bearer_token(request)
        admin = self._admin_key(token)
        if admin is not None:
            return admin
        if token.startswith(PREFIX) or self._api_key(token) is not None:
            raise forbidden("admin_required", "This endpoint needs the admin key")
        raise unauthorized("invalid_api_key", "Incorrect admin key provided")

    def require_key_or_admin(self, request: web.Request) -> Caller:
        """An API key (a companion backend) or the admin key."""
        token = bearer_token(request)
        caller = self._api_key(token) or self._admin_key(token)
        if caller is None:
            if token.startswith(PREFIX):
                raise unauthorized("api_key_required", "This endpoint needs an API key")
            raise unauthorized("invalid_api_key", "Incorrect API key provided")
        return caller

    def identify(self, request: web.Request) -> Caller:
        """Any valid credential: an API key, the admin key, or an `ek_` token of any
        scope (the endpoint decides what each may do)."""
        token = bearer_token(request)
        if token.startswith(PREFIX):
            return self._token(token)
        caller = self._api_key(token) or self._admin_key(token)
        if caller is None:
            raise unauthorized("invalid_api_key", "Incorrect API key or token provided")
        return caller

    async def consume(self, caller: Caller) -> None:
        """Marks a realtime secret used as it opens a call (after a fresh revocation check)."""
        if caller.claims is None or self.ledger is None:
            return
        await self.ledger.check_fresh(caller.claims)
        await self.ledger.claim(caller.claims)
