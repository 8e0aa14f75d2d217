"""Tokens under attack and keys under rotation (no server needed)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
from pathlib import Path

import jwt
import pytest

from signaling.client_secrets import ClientSecrets
from signaling.errors import ApiError
from signaling.signing_keys import KeyRing, KeyRingError, key_ring_for

KEY_A = "a" * 40
KEY_B = "b" * 40


def refusal(secrets: ClientSecrets, token: str, **kwargs) -> str:
    with pytest.raises(ApiError) as info:
        secrets.verify(token, **kwargs)
    assert info.value.status == 401
    return info.value.code


def claims(**overrides) -> dict:
    now = time.time()
    base = {
        "iss": "hark",
        "aud": "hark-realtime",
        "iat": now,
        "nbf": int(now),
        "exp": int(now) + 60,
        "jti": "j1",
        "scope": "realtime",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def forge(payload: dict, key: str | None = KEY_A, alg: str = "HS256", kid: str | None = "k1"):
    headers = {"kid": kid} if kid is not None else None
    return "ek_" + jwt.encode(payload, key, algorithm=alg, headers=headers)


def b64(data: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def hand_signed(header: dict, payload: object) -> str:
    """A JWT signed with the right key but a header or payload PyJWT would not produce."""
    signing_input = f"{b64(header)}.{b64(payload)}".encode()
    sig = hmac.new(KEY_A.encode(), signing_input, hashlib.sha256).digest()
    return (
        "ek_" + signing_input.decode() + "." + base64.urlsafe_b64encode(sig).rstrip(b"=").decode()
    )


@pytest.fixture
def secrets() -> ClientSecrets:
    return ClientSecrets(KeyRing({"k1": KEY_A}, "k1"), leeway_s=2)


def test_a_well_formed_token_passes(secrets):
    assert secrets.verify(forge(claims())).jti == "j1"


@pytest.mark.parametrize(
    ("name", "token_of"),
    [
        ("alg none", lambda: forge(claims(), None, "none")),
        ("HS512 with the right key", lambda: forge(claims(), KEY_A, "HS512")),
        ("HS384 with the right key", lambda: forge(claims(), KEY_A, "HS384")),
        ("foreign key", lambda: forge(claims(), "x" * 40)),
        ("unknown kid", lambda: forge(claims(), KEY_A, kid="k9")),
        ("kid of the wrong type", lambda: hand_signed({"alg": "HS256", "kid": 7}, claims())),
        ("kid a list", lambda: hand_signed({"alg": "HS256", "kid": ["k1"]}, claims())),
        ("payload not an object", lambda: hand_signed({"alg": "HS256", "kid": "k1"}, [1])),
        ("wrong issuer", lambda: forge(claims(iss="evil"))),
        ("wrong audience", lambda: forge(claims(aud="someone-else"))),
        ("unknown scope", lambda: forge(claims(scope="admin"))),
        ("operator token used as a realtime secret", lambda: forge(claims(scope="operator"))),
        ("no exp", lambda: forge(claims(exp=None))),
        ("no jti", lambda: forge(claims(jti=None))),
        ("session not an object", lambda: forge(claims(session="x"))),
        ("sub not a string", lambda: forge(claims(sub=5))),
        ("not a JWT", lambda: "ek_hello"),
        ("empty", lambda: "ek_"),
        ("no prefix", lambda: forge(claims())[3:]),
        ("two parts", lambda: ".".join(forge(claims()).split(".")[:2])),
    ],
)
def test_refused(secrets, name, token_of):
    assert refusal(secrets, token_of()) == "invalid_client_secret", name


def test_tampered_payload_and_header_are_refused(secrets):
    head, _payload, sig = forge(claims())[3:].split(".")
    richer = b64(claims(scope="realtime", session={"instructions": "evil"}))
    assert refusal(secrets, f"ek_{head}.{richer}.{sig}") == "invalid_client_secret"
    none_head = b64({"alg": "none", "typ": "JWT", "kid": "k1"})
    assert refusal(secrets, f"ek_{none_head}.{b64(claims())}.") == "invalid_client_secret"
    assert refusal(secrets, f"ek_{none_head}.{b64(claims())}.{sig}") == "invalid_client_secret"


def test_time_claims_respect_the_leeway(secrets):
    now = int(time.time())
    assert secrets.verify(forge(claims(exp=now - 1))).jti == "j1"  # within 2 s leeway
    assert refusal(secrets, forge(claims(exp=now - 10))) == "client_secret_expired"
    assert secrets.verify(forge(claims(nbf=now + 1))).jti == "j1"
    assert refusal(secrets, forge(claims(nbf=now + 30))) == "client_secret_not_yet_valid"


def test_scopes_and_claims_minted():
    secrets = ClientSecrets(KeyRing({"k1": KEY_A}, "k1"))
    value, _ = secrets.mint({}, 60, "ops", scope="operator")
    assert jwt.get_unverified_header(value[3:])["kid"] == "k1"
    assert refusal(secrets, value) == "invalid_client_secret"  # not a realtime secret
    assert secrets.verify(value, scope="operator").sub == "ops"
    realtime, _ = secrets.mint({"instructions": "hi"}, 60, "u", azp="key:abc")
    got = secrets.verify(realtime)
    assert (got.scope, got.azp, got.session) == ("realtime", "key:abc", {"instructions": "hi"})
    assert abs(got.issued_at - time.time()) < 5


def test_rotation_in_a_keys_file_without_restart(tmp_path: Path):
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"active": "k1", "keys": {"k1": KEY_A}}))
    ring = KeyRing.from_file(path)
    secrets = ClientSecrets(ring)
    old, _ = secrets.mint({}, 60)
    # Rotate: k2 becomes active, k1 still verifies.
    path.write_text(json.dumps({"active": "k2", "keys": {"k1": KEY_A, "k2": KEY_B}}))
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    ring._checked = 0  # skip the once-a-second throttle instead of sleeping
    new, _ = secrets.mint({}, 60)
    assert jwt.get_unverified_header(new[3:])["kid"] == "k2"
    assert secrets.verify(old).jti and secrets.verify(new).jti
    # Retire k1: its tokens are refused from now on.
    path.write_text(json.dumps({"active": "k2", "keys": {"k2": KEY_B}}))
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 2 * 10**9))
    ring._checked = 0
    assert refusal(secrets, old) == "invalid_client_secret"
    assert secrets.verify(new).jti
    # A broken edit keeps the last good keys.
    path.write_text("{not json")
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 3 * 10**9))
    ring._checked = 0
    assert secrets.verify(new).jti


def test_key_ring_refuses_weak_or_inconsistent_keys():
    with pytest.raises(KeyRingError):
        KeyRing({"k1": "short"}, "k1")
    with pytest.raises(KeyRingError):
        KeyRing({"k1": KEY_A}, "k2")
    with pytest.raises(KeyRingError):
        KeyRing({}, "k1")


def test_tokens_without_kid_verify_with_the_default_key():
    from server.config import Config

    config = Config.from_env(
        {"HARK_JWT_SECRET": KEY_A, "HARK_JWT_KEYS": f"k2:{KEY_B}", "HARK_JWT_ACTIVE_KID": "k2"}
    )
    secrets = ClientSecrets(key_ring_for(config))
    legacy = "ek_" + jwt.encode(claims(), KEY_A, algorithm="HS256")  # minted before rotation
    assert secrets.verify(legacy).jti == "j1"
    assert jwt.get_unverified_header(secrets.mint({}, 60)[0][3:])["kid"] == "k2"
