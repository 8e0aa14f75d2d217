"""The HTTP API against a real server: secrets, calls, hang-up, and every refusal's shape."""

from __future__ import annotations

import time

import aiohttp
import jwt
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection

pytestmark = pytest.mark.slow

SIGNING_SECRET = "test-signing-secret-0123456789abcdef"  # set by the `hark` fixture


async def make_offer(audio: bool = True) -> tuple[RTCPeerConnection, str]:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    if audio:
        pc.addTransceiver("audio", direction="sendrecv")
    pc.createDataChannel("oai-events")
    await pc.setLocalDescription(await pc.createOffer())
    return pc, pc.localDescription.sdp


async def request(method: str, url: str, **kwargs) -> tuple[int, dict, object]:
    async with aiohttp.ClientSession() as http:
        async with http.request(method, url, **kwargs) as resp:
            body: object
            if resp.content_type == "application/json":
                body = await resp.json()
            else:
                body = await resp.text()
            return resp.status, dict(resp.headers), body


def assert_error(status: int, body: object, expected_status: int, code: str) -> None:
    assert status == expected_status, body
    assert isinstance(body, dict) and set(body) == {"error"}, body
    error = body["error"]
    assert error["code"] == code, error
    assert error["type"] and error["message"], error


def craft_secret(key: str | None, *, exp_in: float, algorithm: str = "HS256") -> str:
    """A client secret made outside the server: foreign key, expired, or unsigned."""
    claims = {
        "exp": time.time() + exp_in,
        "jti": "crafted",
        "iss": "hark",
        "aud": "hark-realtime",
        "scope": "realtime",
    }
    return "ek_" + jwt.encode(claims, key, algorithm=algorithm)


async def mint(hark, **body) -> dict:
    status, _, payload = await request(
        "POST",
        f"{hark.url}/v1/realtime/client_secrets",
        json=body,
        headers={"Authorization": f"Bearer {hark.api_key}"},
    )
    assert status == 200, payload
    return payload


async def live_calls(hark) -> int:
    _, _, body = await request("GET", f"{hark.url}/healthz")
    return body["calls"]


async def test_healthz_reports_ready(hark):
    status, _, body = await request("GET", f"{hark.url}/healthz")
    assert status == 200 and body["status"] == "ok"
    assert body["engines"] == {"stt": "faster-whisper", "llm": "llama-cpp", "tts": "piper"}


async def test_client_secret_shape_and_lifetime(hark):
    before = int(time.time())
    payload = await mint(hark, session={"type": "realtime", "instructions": "Be brief."})
    assert payload["value"].startswith("ek_")
    assert before + 55 <= payload["expires_at"] <= before + 65  # default lifetime 60 s
    assert payload["session"]["instructions"] == "Be brief."
    assert payload["session"]["object"] == "realtime.session"
    claims = jwt.decode(
        payload["value"][3:], SIGNING_SECRET, algorithms=["HS256"], audience="hark-realtime"
    )
    assert claims["jti"] and claims["exp"] == payload["expires_at"]

    longer = await mint(hark, expires_after={"anchor": "created_at", "seconds": 600}, sub="u-1")
    assert longer["expires_at"] >= before + 595
    claims = jwt.decode(
        longer["value"][3:], SIGNING_SECRET, algorithms=["HS256"], audience="hark-realtime"
    )
    assert (
        claims["sub"] == "u-1"
        and claims["jti"]
        != jwt.decode(
            payload["value"][3:], SIGNING_SECRET, algorithms=["HS256"], audience="hark-realtime"
        )["jti"]
    )


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "missing_authorization"),
        ({"Authorization": "Bearer sk-wrong"}, "invalid_api_key"),
        ({"Authorization": "Basic abc"}, "missing_authorization"),
    ],
)
async def test_client_secrets_refuse_bad_keys(hark, headers, code):
    status, _, body = await request(
        "POST", f"{hark.url}/v1/realtime/client_secrets", json={}, headers=headers
    )
    assert_error(status, body, 401, code)


async def test_client_secrets_refuse_bad_bodies(hark):
    auth = {"Authorization": f"Bearer {hark.api_key}"}
    url = f"{hark.url}/v1/realtime/client_secrets"
    status, _, body = await request(
        "POST", url, data="{not json", headers={**auth, "Content-Type": "application/json"}
    )
    assert_error(status, body, 400, "invalid_json")
    status, _, body = await request(
        "POST", url, json={"expires_after": {"seconds": 10**6}}, headers=auth
    )
    assert_error(status, body, 400, "invalid_value")
    status, _, body = await request(
        "POST",
        url,
        json={"session": {"audio": {"input": {"turn_detection": {"threshold": 7}}}}},
        headers=auth,
    )
    assert_error(status, body, 400, "invalid_session")
    bad_bodies = (
        {"sub": None},  # schemathesis
        {"user": 7},
        {"sub": "x" * 257},
        {"expires_after": {"anchor": [1]}},  # schemathesis
        {"expires_after": {"anchor": "now", "seconds": 60}},
    )
    for bad in bad_bodies:
        status, _, body = await request("POST", url, json=bad, headers=auth)
        assert_error(status, body, 400, "invalid_value")
    secret = (await mint(hark))["value"]
    status, _, body = await request(
        "POST", url, json={}, headers={"Authorization": f"Bearer {secret}"}
    )
    assert_error(status, body, 401, "api_key_required")


async def test_call_with_client_secret_then_hangup_is_idempotent(hark):
    secret = (await mint(hark))["value"]
    pc, offer = await make_offer()
    try:
        status, headers, answer = await request(
            "POST",
            f"{hark.url}/v1/realtime/calls",
            data=offer,
            headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/sdp"},
        )
        assert status == 201, answer
        assert headers["Content-Type"].startswith("application/sdp")
        assert answer.startswith("v=0") and "m=audio" in answer
        location = headers["Location"]
        assert location.startswith("/v1/realtime/calls/rtc_")
        assert await live_calls(hark) >= 1
        for _ in range(2):
            status, _, _ = await request(
                "DELETE", f"{hark.url}{location}", headers={"Authorization": f"Bearer {secret}"}
            )
            assert status == 204
    finally:
        await pc.close()


async def test_multipart_and_beta_paths_with_api_key(hark):
    auth = {"Authorization": f"Bearer {hark.api_key}"}
    pc, offer = await make_offer()
    try:
        form = aiohttp.FormData()
        form.add_field("sdp", offer, content_type="application/sdp")
        form.add_field(
            "session", '{"type": "realtime", "instructions": "Hi"}', content_type="application/json"
        )
        status, headers, answer = await request(
            "POST", f"{hark.url}/v1/realtime/calls", data=form, headers=auth
        )
        assert status == 201, answer
        await request("DELETE", f"{hark.url}{headers['Location']}", headers=auth)
    finally:
        await pc.close()
    pc, offer = await make_offer()
    try:
        status, headers, answer = await request(
            "POST",
            f"{hark.url}/v1/realtime?model=hark-test",
            data=offer,
            headers={**auth, "Content-Type": "application/sdp"},
        )
        assert status == 201, answer
        await request("DELETE", f"{hark.url}{headers['Location']}", headers=auth)
    finally:
        await pc.close()


async def test_call_refusals(hark):
    calls_before = await live_calls(hark)
    url = f"{hark.url}/v1/realtime/calls"
    sdp = {"Content-Type": "application/sdp"}
    auth = {"Authorization": f"Bearer {hark.api_key}"}
    _, offer = await make_offer()

    status, _, body = await request("POST", url, data=offer, headers=sdp)
    assert_error(status, body, 401, "missing_authorization")

    for secret, code in (
        (
            craft_secret("another-secret-that-is-long-enough-32b", exp_in=60),
            "invalid_client_secret",
        ),
        (craft_secret(SIGNING_SECRET, exp_in=-120), "client_secret_expired"),
        (craft_secret(None, exp_in=60, algorithm="none"), "invalid_client_secret"),
    ):
        status, _, body = await request(
            "POST", url, data=offer, headers={**sdp, "Authorization": f"Bearer {secret}"}
        )
        assert_error(status, body, 401, code)

    status, _, body = await request(
        "POST", url, data=offer, headers={**auth, "Content-Type": "text/plain"}
    )
    assert_error(status, body, 415, "unsupported_media_type")

    status, _, body = await request("POST", url, data="hello, not sdp", headers={**auth, **sdp})
    assert_error(status, body, 400, "invalid_sdp")

    _, no_audio = await make_offer(audio=False)
    status, _, body = await request("POST", url, data=no_audio, headers={**auth, **sdp})
    assert_error(status, body, 400, "invalid_sdp")
    assert "audio" in body["error"]["message"]

    broken = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n"
    status, _, body = await request("POST", url, data=broken, headers={**auth, **sdp})
    assert_error(status, body, 400, "invalid_sdp")

    status, _, body = await request(
        "POST", url, data="v=0\r\n" + "a=x\r\n" * 100_000, headers={**auth, **sdp}
    )
    assert_error(status, body, 413, "request_too_large")

    status, _, body = await request("DELETE", f"{url}/rtc_doesnotexist", headers=auth)
    assert_error(status, body, 404, "call_not_found")

    status, _, body = await request("GET", f"{hark.url}/v1/nothing-here")
    assert_error(status, body, 404, "not_found")

    assert await live_calls(hark) == calls_before, "a refused offer left a call behind"


async def test_demo_secret_is_same_origin_only(hark):
    status, _, body = await request("POST", f"{hark.url}/hark/demo/client_secret", json={})
    assert status == 200 and body["value"].startswith("ek_")
    status, _, body = await request(
        "POST",
        f"{hark.url}/hark/demo/client_secret",
        json={},
        headers={"Origin": "http://evil.example"},
    )
    assert_error(status, body, 403, "cross_origin_demo")


async def test_page_is_served(hark):
    status, _, body = await request("GET", f"{hark.url}/")
    assert status == 200 and "<html" in body.lower()
    status, _, body = await request("GET", f"{hark.url}/static/app.js")
    assert status == 200 and "import" in body
