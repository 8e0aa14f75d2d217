"""G.711 µ-law and A-law (ITU-T G.711), the 8 kHz telephone codecs, as numpy lookup tables.

Telephony bridges speak these (Twilio media streams send µ-law), and OpenAI's Realtime
WebSocket accepts them as `audio/pcmu` and `audio/pcma`. Decoding is the standard
expansion of each 8-bit code; encoding picks, for every 16-bit sample, the code whose
expansion is nearest, from a 64 Ki-entry table built once. (Python's `audioop` did this
in C, but it is deprecated since 3.11 and gone in 3.13.)
"""

from __future__ import annotations

import functools

import numpy as np

_BIAS = 0x84


def _ulaw_expand(code: int) -> int:
    u = ~code & 0xFF
    magnitude = (((u & 0x0F) << 3) + _BIAS) << ((u & 0x70) >> 4)
    return _BIAS - magnitude if u & 0x80 else magnitude - _BIAS


def _alaw_expand(code: int) -> int:
    a = code ^ 0x55
    magnitude = (a & 0x0F) << 4
    segment = (a & 0x70) >> 4
    if segment == 0:
        magnitude += 8
    else:
        magnitude = (magnitude + 0x108) << (segment - 1)
    return magnitude if a & 0x80 else -magnitude


@functools.cache
def _tables(law: str) -> tuple[np.ndarray, np.ndarray]:
    """(code → int16 sample, int16 sample + 32768 → nearest code) for one law."""
    expand = _ulaw_expand if law == "ulaw" else _alaw_expand
    decode = np.array([expand(code) for code in range(256)], dtype=np.int16)
    order = np.argsort(decode, kind="stable")
    values = decode[order].astype(np.int32)
    samples = np.arange(-32768, 32768, dtype=np.int32)
    right = np.clip(np.searchsorted(values, samples), 0, 255)
    left = np.clip(right - 1, 0, 255)
    nearer_left = np.abs(samples - values[left]) <= np.abs(values[right] - samples)
    encode = order[np.where(nearer_left, left, right)].astype(np.uint8)
    decode.setflags(write=False)
    encode.setflags(write=False)
    return decode, encode


def decode(data: bytes, law: str) -> np.ndarray:
    """G.711 bytes (`law` is "ulaw" or "alaw") → int16 samples, one per byte."""
    table, _ = _tables(law)
    return table[np.frombuffer(data, dtype=np.uint8)]


def encode(pcm: np.ndarray, law: str) -> bytes:
    """int16 samples → G.711 bytes (`law` is "ulaw" or "alaw")."""
    _, table = _tables(law)
    return table[pcm.astype(np.int32) + 32768].tobytes()
