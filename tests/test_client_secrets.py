"""Client secrets: minted, verified, and refused when forged, expired or misused."""

import time

import jwt
import pytest

from signaling.client_secrets import ClientSecrets
from signaling.errors import ApiError


def test_round_trip_carries_session_and_sub():
    secrets = ClientSecrets("k" * 32)
    value, expires_at = secrets.mint({"instructions": "hi"}, 60, sub="user-7")
    assert value.startswith("ek_") and abs(expires_at - (time.time() + 60)) < 2
    claims = secrets.verify(value)
    assert claims.session == {"instructions": "hi"} and claims.sub == "user-7"
    assert claims.jti != secrets.verify(secrets.mint({}, 60)[0]).jti


def codes(secret: str, verifier: ClientSecrets, **kwargs) -> str:
    with pytest.raises(ApiError) as info:
        verifier.verify(secret, **kwargs)
    assert info.value.status == 401
    return info.value.code


def test_refusals():
    secrets = ClientSecrets("k" * 32, leeway_s=0)
    other = ClientSecrets("z" * 32)
    assert codes(other.mint({}, 60)[0], secrets) == "invalid_client_secret"
    assert codes("sk-not-a-secret", secrets) == "invalid_client_secret"
    value, _ = secrets.mint({}, 60)
    head, payload, sig = value[3:].split(".")
    tampered = "ek_" + ".".join(
        [head, payload[:-2] + ("AA" if payload[-2:] != "AA" else "BB"), sig]
    )
    assert codes(tampered, secrets) == "invalid_client_secret"
    claims = {
        "exp": time.time() - 30,
        "jti": "a",
        "iss": "hark",
        "aud": "hark-realtime",
        "scope": "realtime",
    }
    expired = "ek_" + jwt.encode(claims, "k" * 32, algorithm="HS256")
    assert codes(expired, secrets) == "client_secret_expired"
    assert secrets.verify(expired, allow_expired=True).jti == "a"
    wrong_scope = "ek_" + jwt.encode(
        {**claims, "exp": time.time() + 60, "scope": "operator"}, "k" * 32, algorithm="HS256"
    )
    assert codes(wrong_scope, secrets) == "invalid_client_secret"
    unsigned = "ek_" + jwt.encode({**claims, "exp": time.time() + 60}, None, algorithm="none")
    assert codes(unsigned, secrets) == "invalid_client_secret"
