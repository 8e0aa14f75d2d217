"""Cheap checks on an SDP offer before any peer connection is created for it.

aiortc accepts a lot and fails late, so the obviously wrong offers (not text, not SDP,
no audio section) are refused here with a 400 that says what is missing.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from signaling.errors import ApiError

OFFER_FORMS = ("multipart/form-data", "application/x-www-form-urlencoded")


def _form_value(value: Any) -> bytes:
    """A form field's content, whether sent as a plain field or as a file part."""
    if hasattr(value, "file"):
        return bytes(value.file.read())
    return value.encode() if isinstance(value, str) else bytes(value)


async def read_offer(request: web.Request) -> tuple[str, Any | None]:
    """The offer of a call-creating request and the parsed JSON of its optional `session`
    form field: `application/sdp`, or a multipart/urlencoded form with `sdp` (and
    `session`), as OpenAI's WebRTC endpoints take it. Anything else is a 415."""
    ctype = request.content_type
    if ctype == "application/sdp":
        return validate_offer(await request.read()), None
    if ctype not in OFFER_FORMS:
        raise ApiError(
            415,
            "unsupported_media_type",
            f"Unsupported Content-Type '{ctype}': send application/sdp or multipart/form-data",
        )
    try:
        form = await request.post()
    except (HttpProcessingError, ValueError) as exc:
        # e.g. a part header with control characters (found by schemathesis: a 500).
        raise ApiError(
            400, "invalid_multipart", f"The multipart body is malformed: {exc}"[:300]
        ) from exc
    sdp = form.get("sdp")
    if sdp is None:
        raise ApiError(400, "missing_sdp", "The multipart body has no 'sdp' field", param="sdp")
    raw_session = form.get("session")
    session = None
    if raw_session is not None:
        try:
            session = json.loads(_form_value(raw_session))
        except ValueError as exc:
            raise ApiError(
                400, "invalid_session", "'session' is not valid JSON", param="session"
            ) from exc
    return validate_offer(_form_value(sdp)), session


def validate_offer(raw: bytes | str) -> str:
    if isinstance(raw, bytes):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ApiError(400, "invalid_sdp", "The SDP offer is not UTF-8 text") from exc
    else:
        text = raw
    text = text.strip().replace("\r\n", "\n").replace("\n", "\r\n") + "\r\n"
    if not text.startswith("v=0"):
        raise ApiError(400, "invalid_sdp", "The body is not an SDP offer (it must start with v=0)")
    lines = text.split("\r\n")
    if not any(line.startswith("m=audio ") for line in lines):
        raise ApiError(400, "invalid_sdp", "The SDP offer has no audio m-line; send a microphone")
    if "\x00" in text:
        raise ApiError(400, "invalid_sdp", "The SDP offer contains NUL bytes")
    # JSEP gives every media section a mid; aiortc fails half-way without one (and then
    # cannot even close cleanly), so such offers are refused here (found by fuzzing).
    sections = text.split("\r\nm=")[1:]
    if any("\r\na=mid:" not in section for section in sections):
        raise ApiError(400, "invalid_sdp", "Every m-section of the offer needs an a=mid line")
    return text
