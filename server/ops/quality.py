"""One call's connection quality over time, from aiortc's `getStats()` counters.

aiortc's report holds cumulative counters: `inbound-rtp` (what we receive: packets,
packets lost, interarrival jitter in RTP clock units), `remote-inbound-rtp` (what the peer
said in its RTCP receiver report about our stream: loss, jitter, and the round-trip time
aiortc derives from it), `outbound-rtp` and `transport` (bytes). `QualityTracker` turns
two successive readings into a sample: bit rates and loss over the interval, current
jitter and RTT, and a MOS estimate from the worse direction.

Loss "in" is the caller → Hark direction, measured here; loss "out" is Hark → caller, as
the caller reported it. aiortc's `fractionLost` is RTCP's 8-bit fraction (0..255), not the
0..1 of browsers, so it is scaled here.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from server.ops.mos import estimate_mos

OPUS_CLOCK_RATE = 48_000


@dataclass(frozen=True)
class StatsReading:
    """The counters of one `getStats()` call that matter for quality (cumulative)."""

    at: float  # time.monotonic() of the reading
    packets_received: int = 0
    packets_lost: int = 0
    jitter_in_ms: float | None = None
    packets_sent: int = 0
    bytes_received: int = 0
    bytes_sent: int = 0
    remote_packets_lost: int | None = None
    remote_fraction_lost: float | None = None  # 0..1, from the latest receiver report
    jitter_out_ms: float | None = None
    rtt_ms: float | None = None


def _get(stats: Any, name: str, default: Any = None) -> Any:
    if isinstance(stats, dict):
        return stats.get(name, default)
    return getattr(stats, name, default)


def reading_from_report(
    report: Any, at: float | None = None, clock_rate: int = OPUS_CLOCK_RATE
) -> StatsReading:
    """Reads an aiortc `RTCStatsReport` (or a list of dicts shaped the same way)."""
    fields: dict[str, Any] = {"at": time.monotonic() if at is None else at}
    values = report.values() if hasattr(report, "values") else report
    received = lost = sent = bytes_in = bytes_out = 0
    for stats in values:
        kind = _get(stats, "type")
        if kind in ("inbound-rtp", "outbound-rtp", "remote-inbound-rtp"):
            if _get(stats, "kind", "audio") != "audio":
                continue
        if kind == "inbound-rtp":
            received += int(_get(stats, "packetsReceived", 0) or 0)
            lost += max(0, int(_get(stats, "packetsLost", 0) or 0))
            jitter = _get(stats, "jitter")
            if jitter is not None:
                fields["jitter_in_ms"] = jitter * 1000 / clock_rate
        elif kind == "outbound-rtp":
            sent += int(_get(stats, "packetsSent", 0) or 0)
        elif kind == "transport":
            bytes_in += int(_get(stats, "bytesReceived", 0) or 0)
            bytes_out += int(_get(stats, "bytesSent", 0) or 0)
        elif kind == "remote-inbound-rtp":
            fields["remote_packets_lost"] = max(0, int(_get(stats, "packetsLost", 0) or 0))
            fraction = _get(stats, "fractionLost")
            if fraction is not None:
                fields["remote_fraction_lost"] = fraction / 256 if fraction > 1 else fraction
            jitter = _get(stats, "jitter")
            if jitter is not None:
                fields["jitter_out_ms"] = jitter * 1000 / clock_rate
            rtt = _get(stats, "roundTripTime")
            if rtt is not None:
                fields["rtt_ms"] = rtt * 1000
    fields.update(
        packets_received=received,
        packets_lost=lost,
        packets_sent=sent,
        bytes_received=bytes_in,
        bytes_sent=bytes_out,
    )
    return StatsReading(**fields)


@dataclass(frozen=True)
class QualitySample:
    at: float  # wall clock, seconds since the epoch
    rtt_ms: float | None
    jitter_in_ms: float | None
    jitter_out_ms: float | None
    loss_in_pct: float | None  # over the interval since the previous sample
    loss_out_pct: float | None  # the caller's latest receiver report
    bitrate_in_kbps: float | None
    bitrate_out_kbps: float | None
    packets_received: int
    packets_lost: int
    packets_sent: int
    remote_packets_lost: int | None
    mos: float | None

    def to_dict(self) -> dict[str, Any]:
        return {k: (round(v, 2) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def _pct(part: int, whole: int) -> float | None:
    return 100 * part / whole if whole > 0 else None


class QualityTracker:
    """Turns successive readings of one call into samples; keeps the call's totals."""

    def __init__(self) -> None:
        self._previous: StatsReading | None = None
        self.latest: StatsReading | None = None

    def update(
        self,
        reading: StatsReading,
        *,
        wall: float | None = None,
        client_jitter_buffer_ms: float | None = None,
    ) -> QualitySample:
        previous = self._previous
        self._previous = reading
        self.latest = reading
        loss_in = rate_in = rate_out = None
        if previous is not None and reading.at > previous.at:
            seconds = reading.at - previous.at
            got = reading.packets_received - previous.packets_received
            missed = reading.packets_lost - previous.packets_lost
            loss_in = _pct(max(0, missed), max(0, got) + max(0, missed))
            rate_in = max(0, reading.bytes_received - previous.bytes_received) * 8 / seconds / 1000
            rate_out = max(0, reading.bytes_sent - previous.bytes_sent) * 8 / seconds / 1000
        loss_out = (
            None if reading.remote_fraction_lost is None else 100 * reading.remote_fraction_lost
        )
        return QualitySample(
            at=time.time() if wall is None else wall,
            rtt_ms=reading.rtt_ms,
            jitter_in_ms=reading.jitter_in_ms,
            jitter_out_ms=reading.jitter_out_ms,
            loss_in_pct=loss_in,
            loss_out_pct=loss_out,
            bitrate_in_kbps=rate_in,
            bitrate_out_kbps=rate_out,
            packets_received=reading.packets_received,
            packets_lost=reading.packets_lost,
            packets_sent=reading.packets_sent,
            remote_packets_lost=reading.remote_packets_lost,
            mos=_mos(reading, loss_in, loss_out, client_jitter_buffer_ms),
        )

    def totals(self) -> dict[str, float | None]:
        """Loss over the whole call so far, each direction, in percent."""
        latest = self.latest
        if latest is None:
            return {"loss_in_pct": None, "loss_out_pct": None}
        loss_in = _pct(latest.packets_lost, latest.packets_received + latest.packets_lost)
        loss_out = None
        if latest.remote_packets_lost is not None:
            loss_out = _pct(latest.remote_packets_lost, latest.packets_sent)
        return {
            "loss_in_pct": None if loss_in is None else round(loss_in, 2),
            "loss_out_pct": None if loss_out is None else round(loss_out, 2),
        }


def _mos(
    reading: StatsReading,
    loss_in: float | None,
    loss_out: float | None,
    jitter_buffer_ms: float | None,
) -> float | None:
    """The worse direction decides: the MOS a person on the worse leg would give."""
    if reading.rtt_ms is None and loss_in is None:
        return None
    jitters = [j for j in (reading.jitter_in_ms, reading.jitter_out_ms) if j is not None]
    losses = [x for x in (loss_in, loss_out) if x is not None]
    return estimate_mos(
        reading.rtt_ms or 0.0,
        max(jitters, default=0.0),
        max(losses, default=0.0),
        jitter_buffer_ms,
    )
