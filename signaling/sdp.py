"""Cheap checks on an SDP offer before any peer connection is created for it.

aiortc accepts a lot and fails late, so the obviously wrong offers (not text, not SDP,
no audio section) are refused here with a 400 that says what is missing.
"""

from __future__ import annotations

from signaling.errors import ApiError


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
