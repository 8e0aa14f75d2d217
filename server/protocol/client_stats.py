"""`hark.client_stats`: the compact summary of the browser's own `getStats()`, validated.

aiortc cannot see what only the receiving browser knows (its jitter buffer delay, how much
audio it had to conceal), so the Hark browser client sends these figures every couple of
seconds. Only the known fields are accepted, each a finite number in a sane range, so a
client can neither grow the server's memory nor poison the dashboard.
"""

from __future__ import annotations

import math
from typing import Any

# field → (minimum, maximum)
FIELDS: dict[str, tuple[float, float]] = {
    "rtt_ms": (0, 600_000),
    "jitter_ms": (0, 600_000),
    "jitter_buffer_ms": (0, 600_000),
    "packets_received": (0, 1e12),
    "packets_lost": (-1e12, 1e12),  # RTP counts duplicates, so it can go negative
    "loss_pct": (0, 100),
    "concealed_pct": (0, 100),
    "concealment_events": (0, 1e12),
    "bitrate_in_kbps": (0, 1e6),
    "bitrate_out_kbps": (0, 1e6),
    "audio_level": (0, 1),
}


class ClientStatsError(ValueError):
    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


def parse_client_stats(raw: Any) -> dict[str, float | None]:
    if not isinstance(raw, dict):
        raise ClientStatsError("'stats' must be an object", "stats")
    if len(raw) > len(FIELDS):
        raise ClientStatsError(f"'stats' has more than {len(FIELDS)} fields", "stats")
    parsed: dict[str, float | None] = {}
    for key, value in raw.items():
        bounds = FIELDS.get(key) if isinstance(key, str) else None
        if bounds is None:
            known = ", ".join(FIELDS)
            raise ClientStatsError(
                f"Unknown field 'stats.{str(key)[:40]}'; known fields: {known}", "stats"
            )
        if value is None:
            parsed[key] = None
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ClientStatsError(f"'stats.{key}' must be a number or null", f"stats.{key}")
        low, high = bounds
        if not math.isfinite(value) or not low <= value <= high:
            raise ClientStatsError(
                f"'stats.{key}' must be between {low:g} and {high:g}", f"stats.{key}"
            )
        parsed[key] = round(float(value), 3)
    return parsed
