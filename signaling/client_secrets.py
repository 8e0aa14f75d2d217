"""Short-lived tokens: `ek_` followed by a JWT signed with one of the server's keys.

A companion app or backend holds the API key and mints a secret per user session; the
browser or glasses only ever see the secret, which expires in about a minute and carries
the session configuration it was minted for. The JWT is self-contained, so any node that
shares the signing keys can check it; single use and revocation need shared state and are
checked by `signaling.token_ledger`. The same format with scope `operator` authorises
the operator API.

Refused: another algorithm than HS256 (including `alg: none`), an unknown `kid`, a
foreign key, a tampered payload, the wrong `iss`/`aud`/scope, and `exp`/`nbf` outside
the configured leeway.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

import jwt

from signaling.errors import unauthorized
from signaling.signing_keys import KeyRing

PREFIX = "ek_"
ALGORITHM = "HS256"
ISSUER = "hark"
AUDIENCE = "hark-realtime"
Scope = Literal["realtime", "operator", "translation"]
# A `translation` secret opens only a translation session; a `realtime` one only a call.
SCOPES: tuple[str, ...] = ("realtime", "operator", "translation")


@dataclass(frozen=True)
class ClientSecretClaims:
    jti: str
    expires_at: int
    session: dict[str, Any]
    sub: str | None
    scope: str = "realtime"
    # Issued-at with millisecond precision: a revocation refuses tokens issued before it.
    issued_at: float = 0.0
    # The API key that minted it (`key:<digest>`), for per-key limits.
    azp: str | None = None


class ClientSecrets:
    def __init__(self, keys: KeyRing | str, leeway_s: float = 5.0) -> None:
        self.keys = KeyRing.single(keys) if isinstance(keys, str) else keys
        self._leeway = leeway_s

    def mint(
        self,
        session: dict[str, Any],
        ttl_s: int,
        sub: str | None = None,
        *,
        scope: Scope = "realtime",
        azp: str | None = None,
    ) -> tuple[str, int]:
        """Returns (secret, expires_at unix seconds)."""
        now = time.time()
        expires_at = int(now) + ttl_s
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "iat": round(now, 3),
            "nbf": int(now),
            "exp": expires_at,
            "jti": uuid.uuid4().hex,
            "scope": scope,
        }
        if scope in ("realtime", "translation"):
            claims["session"] = session
        if sub is not None:
            claims["sub"] = sub
        if azp is not None:
            claims["azp"] = azp
        kid, key = self.keys.signing_key()
        token = jwt.encode(claims, key, algorithm=ALGORITHM, headers={"kid": kid})
        return PREFIX + token, expires_at

    def verify(
        self, secret: str, *, allow_expired: bool = False, scope: Scope | None = "realtime"
    ) -> ClientSecretClaims:
        """Checks algorithm, key, signature, issuer, audience, times and scope; raises 401.

        `scope=None` accepts any known scope and leaves the check to the caller.
        """
        if not secret.startswith(PREFIX):
            raise unauthorized("invalid_client_secret", "Client secrets start with 'ek_'")
        token = secret[len(PREFIX) :]
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise unauthorized("invalid_client_secret", "The client secret is not a JWT") from exc
        kid = header.get("kid")
        if header.get("alg") != ALGORITHM or not (kid is None or isinstance(kid, str)):
            raise unauthorized("invalid_client_secret", "The client secret is not valid")
        key = self.keys.verifying_key(kid)
        if key is None:
            raise unauthorized(
                "invalid_client_secret", "The client secret was signed with an unknown key"
            )
        try:
            claims = jwt.decode(
                token,
                key,
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
        except jwt.ImmatureSignatureError as exc:
            raise unauthorized(
                "client_secret_not_yet_valid", "The client secret is not valid yet (nbf)"
            ) from exc
        except jwt.PyJWTError as exc:
            raise unauthorized(
                "invalid_client_secret", "The client secret is not valid for this server"
            ) from exc
        session = claims.get("session", {})
        sub = claims.get("sub")
        granted = claims.get("scope")
        if granted not in SCOPES or (scope is not None and granted != scope):
            raise unauthorized("invalid_client_secret", f"The token's scope is not '{scope}'")
        if not isinstance(session, dict):
            raise unauthorized("invalid_client_secret", "The token's session is not an object")
        if sub is not None and not isinstance(sub, str):
            raise unauthorized("invalid_client_secret", "The token's sub is not a string")
        issued = claims.get("iat", 0)
        return ClientSecretClaims(
            jti=str(claims["jti"]),
            expires_at=int(claims["exp"]),
            session=dict(session or {}),
            sub=sub,
            scope=str(granted),
            issued_at=float(issued) if isinstance(issued, int | float) else 0.0,
            azp=claims.get("azp") if isinstance(claims.get("azp"), str) else None,
        )
