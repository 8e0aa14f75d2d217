"""Short-lived client secrets: `ek_` followed by a JWT signed with the server's secret.

A companion app or backend holds the API key and mints a secret per user session; the
browser or glasses only ever see the secret, which expires in about a minute and carries
the session configuration it was minted for. The JWT is self-contained, so any node that
shares the signing secret can check it without shared state.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt

from signaling.errors import unauthorized

PREFIX = "ek_"
ALGORITHM = "HS256"
ISSUER = "hark"
AUDIENCE = "hark-realtime"


@dataclass(frozen=True)
class ClientSecretClaims:
    jti: str
    expires_at: int
    session: dict[str, Any]
    sub: str | None


class ClientSecrets:
    def __init__(self, signing_key: str, leeway_s: float = 5.0) -> None:
        self._key = signing_key
        self._leeway = leeway_s

    def mint(self, session: dict[str, Any], ttl_s: int, sub: str | None = None) -> tuple[str, int]:
        """Returns (secret, expires_at unix seconds)."""
        now = int(time.time())
        expires_at = now + ttl_s
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "iat": now,
            "nbf": now,
            "exp": expires_at,
            "jti": uuid.uuid4().hex,
            "scope": "realtime",
            "session": session,
        }
        if sub is not None:
            claims["sub"] = sub
        return PREFIX + jwt.encode(claims, self._key, algorithm=ALGORITHM), expires_at

    def verify(self, secret: str, *, allow_expired: bool = False) -> ClientSecretClaims:
        """Checks signature, algorithm, issuer, audience and expiry; raises a 401 ApiError."""
        if not secret.startswith(PREFIX):
            raise unauthorized("invalid_client_secret", "Client secrets start with 'ek_'")
        try:
            claims = jwt.decode(
                secret[len(PREFIX) :],
                self._key,
                algorithms=[ALGORITHM],
                audience=AUDIENCE,
                issuer=ISSUER,
                leeway=self._leeway,
                options={
                    "require": ["exp", "jti", "iss", "aud"],
                    "verify_exp": not allow_expired,
                },
            )
        except jwt.ExpiredSignatureError as exc:
            raise unauthorized(
                "client_secret_expired", "The client secret has expired; mint a new one"
            ) from exc
        except jwt.PyJWTError as exc:
            raise unauthorized(
                "invalid_client_secret", "The client secret is not valid for this server"
            ) from exc
        if claims.get("scope") != "realtime" or not isinstance(claims.get("session", {}), dict):
            raise unauthorized("invalid_client_secret", "The client secret has the wrong scope")
        return ClientSecretClaims(
            jti=str(claims["jti"]),
            expires_at=int(claims["exp"]),
            session=dict(claims.get("session") or {}),
            sub=claims.get("sub"),
        )
