"""Hark's Prometheus metrics (`GET /metrics`), on a registry of its own per app.

One registry per application (not prometheus-client's global one), so two servers in one
process (tests) never share counters. Label values come only from Hark's own code (end
reasons, error codes, directions), never from what a client sent, so the number of series
stays bounded.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
STOP_BUCKETS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0)
LOSS_BUCKETS = (0.0, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
JITTER_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.5)
RTT_BUCKETS = (0.01, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.0)
MOS_BUCKETS = (1.0, 2.0, 2.5, 3.0, 3.5, 3.8, 4.0, 4.2, 4.4, 4.5)


class LoadSignals(Protocol):
    """A reading of the node's load (server.calls.load.LoadReading)."""

    loop_lag_ms: float
    pacing_slip: float
    cpu: float
    loop_busy: float
    over: str | None


_LABEL = re.compile(r"^[a-z0-9_.]{1,48}$")


def safe_label(value: str | None) -> str:
    value = (value or "unknown").lower()
    return value if _LABEL.match(value) else "other"


class HarkMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.calls_live = Gauge("hark_calls_live", "Calls in progress", registry=r)
        self.calls_started = Counter("hark_calls_started", "Calls started", registry=r)
        self.calls_ended = Counter(
            "hark_calls_ended", "Calls ended, by reason", ["reason"], registry=r
        )
        self.turns = Counter(
            "hark_turns", "Assistant responses, by final status", ["status"], registry=r
        )
        self.barge_ins = Counter("hark_barge_ins", "Replies interrupted by the user", registry=r)
        self.errors = Counter(
            "hark_errors", "Errors sent to clients or failed calls, by type", ["type"], registry=r
        )
        self.engine_faults = Counter(
            "hark_engine_faults",
            "Engine failures in calls (the caller heard an apology), by stage and code",
            ["stage", "code"],
            registry=r,
        )
        self.voice_to_voice = Histogram(
            "hark_voice_to_voice_seconds",
            "End of the user's speech to the first reply frame sent",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.vad_wait = Histogram(
            "hark_vad_wait_seconds",
            "End of speech to the VAD's end-of-turn decision",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.stt = Histogram(
            "hark_stt_seconds", "Speech-to-text time", buckets=LATENCY_BUCKETS, registry=r
        )
        self.llm_first_token = Histogram(
            "hark_llm_first_token_seconds",
            "Response start to the LLM's first token",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.tts_first_audio = Histogram(
            "hark_tts_first_audio_seconds",
            "First clause to its first synthesized audio",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.barge_in_stop = Histogram(
            "hark_barge_in_stop_seconds",
            "User's speech onset to the reply's audio being cleared",
            buckets=STOP_BUCKETS,
            registry=r,
        )
        self.packet_loss = Histogram(
            "hark_packet_loss_ratio",
            "Packet loss per quality sample (in: caller to Hark; out: as the caller reports)",
            ["direction"],
            buckets=LOSS_BUCKETS,
            registry=r,
        )
        self.jitter = Histogram(
            "hark_jitter_seconds",
            "Interarrival jitter per quality sample",
            ["direction"],
            buckets=JITTER_BUCKETS,
            registry=r,
        )
        self.rtt = Histogram(
            "hark_rtt_seconds",
            "Round-trip time per quality sample",
            buckets=RTT_BUCKETS,
            registry=r,
        )
        self.mos = Histogram(
            "hark_mos", "E-model MOS estimate per quality sample", buckets=MOS_BUCKETS, registry=r
        )
        for direction in ("in", "out"):
            self.packet_loss.labels(direction)
            self.jitter.labels(direction)

    def track_load(self, reading: Callable[[], LoadSignals]) -> None:
        """The node's measured load, read at each scrape (server.calls.load)."""
        r = self.registry
        gauges = (
            ("hark_node_loop_lag_seconds", "Event-loop lag, smoothed", "loop_lag_ms", 1e-3),
            ("hark_node_pacing_slip_ratio", "Outbound frames late, smoothed", "pacing_slip", 1),
            ("hark_node_cpu_ratio", "Process CPU over its usable cores, smoothed", "cpu", 1),
            ("hark_node_loop_busy_ratio", "Loop thread running or waiting", "loop_busy", 1),
        )
        for name, doc, attribute, scale in gauges:
            gauge = Gauge(name, doc, registry=r)
            gauge.set_function(lambda a=attribute, k=scale: float(getattr(reading(), a)) * k)
        over = Gauge("hark_node_overloaded", "1 while new calls are refused for load", registry=r)
        over.set_function(lambda: float(reading().over is not None))

    def track_live(self, count: Callable[[], int]) -> None:
        self.calls_live.set_function(lambda: float(count()))

    def call_ended(self, reason: str | None) -> None:
        self.calls_ended.labels(safe_label(reason)).inc()

    def error(self, kind: str | None) -> None:
        self.errors.labels(safe_label(kind)).inc()

    def engine_fault(self, stage: str, code: str) -> None:
        self.engine_faults.labels(safe_label(stage), safe_label(code)).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
