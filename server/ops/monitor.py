"""The operator's view of every call: quality samples, turns, barge-ins, the client's own stats.

`CallMonitor` hooks into the `CallManager` (call started/ended) and observes each call
through typed hooks (`server.call.observer`): replies finished with their timings,
barge-ins, errors, the client's own stats. A single sampler
task reads every live call's `getStats()` every `interval` seconds, so 50 calls cost 50
cheap reads per tick, not 50 timers. Each tick publishes one batch with the summaries of
the calls that changed, which the dashboard's live stream applies row by row.

What it keeps is bounded: samples and turns per call in ring buffers, and the timelines
of the most recently ended calls for a while, so an operator can still open a call that
just dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from server.call.observer import CallObserver, ResponseOutcome
from server.ops.prometheus import HarkMetrics
from server.ops.quality import QualitySample, QualityTracker, reading_from_report

if TYPE_CHECKING:
    from server.call.session import RealtimeSession

log = logging.getLogger("hark.monitor")

MAX_SAMPLES = 900  # 30 minutes at one sample every 2 s
MAX_TURNS = 500
MAX_CLIENT_STATS = 300
MAX_ENDED = 200
SUBSCRIBER_QUEUE = 64
GOOD_MOS = 4.0
FAIR_MOS = 3.6
FAILURE_REASONS = ("ice_timeout", "connection_failed", "negotiation_failed")


class CallSource(Protocol):
    on_call_started: list[Any]
    on_call_ended: list[Any]

    def __len__(self) -> int: ...

    def live(self) -> Iterable[RealtimeSession]: ...


def grade(mos: float | None) -> str:
    if mos is None:
        return "unknown"
    if mos >= GOOD_MOS:
        return "good"
    return "fair" if mos >= FAIR_MOS else "poor"


_GRADE_RANK = {"poor": 0, "fair": 1, "good": 2, "unknown": 3}

# What makes a call suffer, shown beside its MOS so an operator sees why at a glance.
ISSUE_LOSS_PCT = 3.0
ISSUE_RTT_MS = 300.0
ISSUE_JITTER_MS = 30.0
ISSUE_BUFFER_MS = 200.0
ISSUE_CONCEALED_PCT = 5.0


def quality_issues(quality: dict[str, Any], client: dict[str, Any] | None) -> list[str]:
    def worst(*values: Any) -> float:
        return max((v for v in values if isinstance(v, int | float)), default=0.0)

    client = client or {}
    issues = []
    loss = worst(quality.get("loss_in_pct"), quality.get("loss_out_pct"), client.get("loss_pct"))
    if loss >= ISSUE_LOSS_PCT:
        issues.append(f"loss {loss:.0f}%")
    rtt = worst(quality.get("rtt_ms"))
    if rtt >= ISSUE_RTT_MS:
        issues.append(f"RTT {rtt:.0f} ms")
    jitter = worst(quality.get("jitter_in_ms"), quality.get("jitter_out_ms"))
    if jitter >= ISSUE_JITTER_MS:
        issues.append(f"jitter {jitter:.0f} ms")
    buffer = worst(client.get("jitter_buffer_ms"))
    if buffer >= ISSUE_BUFFER_MS:
        issues.append(f"client buffer {buffer:.0f} ms")
    concealed = worst(client.get("concealed_pct"))
    if concealed >= ISSUE_CONCEALED_PCT:
        issues.append(f"concealed {concealed:.0f}%")
    return issues


def worst_first(summary: dict[str, Any]) -> tuple[int, float, float]:
    """Sort key: poor calls first, then by MOS, then the oldest."""
    mos = summary["quality"].get("mos")
    return (
        _GRADE_RANK[summary["grade"]],
        mos if mos is not None else 5.0,
        summary["started_at"],
    )


@dataclass
class MonitoredCall:
    """What the operator sees of one call, live or recently ended."""

    call_id: str
    session: RealtimeSession | None
    started_at: float = field(default_factory=time.time)
    ended_at: float | None = None
    end_reason: str | None = None
    # The durable conversation the call belongs to (/v1/conversations/{id}).
    conversation_id: str | None = None
    tracker: QualityTracker = field(default_factory=QualityTracker)
    samples: deque[QualitySample] = field(default_factory=lambda: deque(maxlen=MAX_SAMPLES))
    turns: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=MAX_TURNS))
    client_stats: deque[dict[str, Any]] = field(
        default_factory=lambda: deque(maxlen=MAX_CLIENT_STATS)
    )
    turn_count: int = 0
    barge_ins: int = 0
    engine_faults: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    dirty: bool = True
    # When a reply last began playing and the user last started speaking (monotonic), to
    # time a reply's audio cut by speech over it.
    playing_since: float | None = None
    speech_started_at: float | None = None
    transport: str = "webrtc"  # or "websocket" (no RTP, so no network quality samples)

    def count_error(self, code: str) -> None:
        self.errors[code] = self.errors.get(code, 0) + 1
        self.dirty = True

    def add_turn(self, turn: dict[str, Any]) -> None:
        self.turns.append(turn)
        self.turn_count += 1
        self.dirty = True

    def add_client_stats(self, stats: dict[str, Any]) -> None:
        self.client_stats.append({"at": round(time.time(), 3), **stats})
        self.dirty = True

    @property
    def state(self) -> str:
        if self.ended_at is not None:
            return "ended"
        state = getattr(self.session, "state", None)
        return str(getattr(state, "value", state or "unknown"))

    def summary(self) -> dict[str, Any]:
        latest = self.samples[-1].to_dict() if self.samples else {}
        latest.pop("at", None)
        last_turn = self.turns[-1] if self.turns else None
        client = self.client_stats[-1] if self.client_stats else None
        end = self.ended_at if self.ended_at is not None else time.time()
        return {
            "id": self.call_id,
            "started_at": round(self.started_at, 3),
            "duration_s": round(end - self.started_at, 1),
            "state": self.state,
            "transport": self.transport,
            # The caller's language (asked or detected); None on the English model.
            "language": getattr(getattr(self.session, "language", None), "caller", None),
            "ended_at": self.ended_at,
            "end_reason": self.end_reason,
            "conversation_id": self.conversation_id,
            "grade": grade(latest.get("mos")),
            "issues": quality_issues(latest, client),
            "quality": latest,
            "loss_total": self.tracker.totals(),
            "turns": self.turn_count,
            "barge_ins": self.barge_ins,
            "errors": sum(self.errors.values()),
            "engine_faults": self.engine_faults,
            "last_turn": last_turn,
            "client": client,
        }

    def timeline(self) -> dict[str, Any]:
        return {
            **self.summary(),
            "samples": [s.to_dict() for s in self.samples],
            "turn_list": list(self.turns),
            "client_stats": list(self.client_stats),
            "error_counts": dict(self.errors),
        }


class Subscription:
    """One live-stream reader. A reader too slow to keep up gets a fresh snapshot instead."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=SUBSCRIBER_QUEUE)
        self.needs_snapshot = True

    def offer(self, message: dict[str, Any]) -> None:
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            while not self.queue.empty():
                self.queue.get_nowait()
            self.needs_snapshot = True
            self.queue.put_nowait({"type": "resync"})


class CallMonitor:
    def __init__(self, metrics: HarkMetrics, interval_s: float = 2.0) -> None:
        self.metrics = metrics
        self.interval_s = interval_s
        self._live: dict[str, MonitoredCall] = {}
        self._ended: OrderedDict[str, MonitoredCall] = OrderedDict()
        self._subscribers: set[Subscription] = set()
        self._task: asyncio.Task[None] | None = None

    # ---- wiring ----------------------------------------------------------------------------

    def attach(self, calls: CallSource) -> None:
        calls.on_call_started.append(self.call_started)
        calls.on_call_ended.append(self.call_ended)
        self.metrics.track_live(lambda: len(self._live))

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="call-monitor")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def call_started(self, session: RealtimeSession) -> None:
        record = MonitoredCall(
            session.call_id,
            session,
            started_at=session.created_at,
            transport=session.transport.kind,
            conversation_id=getattr(session, "conversation_id", None),
        )
        self._live[session.call_id] = record
        session.observers.append(_Watch(self, record))
        self.metrics.calls_started.inc()
        self._publish({"type": "call.started", "call": record.summary()})

    def call_ended(self, session: RealtimeSession) -> None:
        record = self._live.pop(session.call_id, None)
        if record is None:
            return
        record.ended_at = time.time()
        record.end_reason = session.close_reason or "unknown"
        record.session = None
        self.metrics.call_ended(record.end_reason)
        if record.end_reason in FAILURE_REASONS:
            self.metrics.error(f"call_{record.end_reason}")
        self._ended[record.call_id] = record
        while len(self._ended) > MAX_ENDED:
            self._ended.popitem(last=False)
        self._publish(
            {"type": "call.ended", "call_id": record.call_id, "reason": record.end_reason}
        )

    # ---- reading -------------------------------------------------------------------------

    def get(self, call_id: str) -> MonitoredCall | None:
        return self._live.get(call_id) or self._ended.get(call_id)

    def summaries(self) -> list[dict[str, Any]]:
        return sorted((r.summary() for r in self._live.values()), key=worst_first)

    def subscribe(self) -> Subscription:
        subscription = Subscription()
        self._subscribers.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscribers.discard(subscription)

    def snapshot(self) -> dict[str, Any]:
        return {"type": "snapshot", "interval_s": self.interval_s, "calls": self.summaries()}

    def _publish(self, message: dict[str, Any]) -> None:
        for subscription in list(self._subscribers):
            subscription.offer(message)

    # ---- what happens in a call --------------------------------------------------------

    def response_finished(self, record: MonitoredCall, outcome: ResponseOutcome) -> None:
        """A reply ended: its turn's timings, whether it was a barge-in, how fast it stopped."""
        m = self.metrics
        if outcome.status == "cancelled" and outcome.reason == "turn_detected":
            record.barge_ins += 1
            m.barge_ins.inc()
        elif outcome.status == "failed" and outcome.fault is not None:
            self.error(record, outcome.fault[1])  # the client got an `error` with this code
            self.engine_fault(record, *outcome.fault)
        elif outcome.status == "failed":
            record.count_error("response_failed")
            m.error("response_failed")
        turn: dict[str, Any] = {
            "response_id": outcome.response_id,
            "at": round(time.time(), 3),
            "status": outcome.status,
            "reason": outcome.reason,
        }
        for key, value in outcome.timings.items():
            if isinstance(value, int | float | str) or value is None:
                turn[key] = value
        stop = _number(outcome.timings.get("barge_in_stop_ms"))
        spoke, playing = record.speech_started_at, record.playing_since
        if stop is None and outcome.audio_cut and spoke is not None and playing is not None:
            if spoke >= playing:  # the user spoke over the reply, and it was cut
                stop = (time.monotonic() - spoke) * 1000
        turn["barge_in_stop_ms"] = None if stop is None else round(stop, 1)
        from_speech = outcome.timings.get("measured_from") == "speech_end"
        first_frame = _number(outcome.timings.get("first_frame_sent_ms"))
        turn["voice_to_voice_ms"] = first_frame if from_speech else None
        record.add_turn(turn)
        status = outcome.status
        m.turns.labels(status if status in ("completed", "cancelled", "failed") else "other").inc()
        for histogram, key in (
            (m.voice_to_voice, "voice_to_voice_ms"),
            (m.vad_wait, "vad_wait_ms"),
            (m.stt, "stt_ms"),
            (m.llm_first_token, "llm_first_token_ms"),
            (m.tts_first_audio, "tts_first_audio_ms"),
            (m.barge_in_stop, "barge_in_stop_ms"),
        ):
            value = _number(turn.get(key))
            if value is not None and value >= 0:
                histogram.observe(value / 1000)

    def error(self, record: MonitoredCall, code: str) -> None:
        record.count_error(code)
        self.metrics.error(code)

    def engine_fault(self, record: MonitoredCall, stage: str, code: str) -> None:
        record.engine_faults += 1
        self.metrics.engine_fault(stage, code)

    def client_stats(self, record: MonitoredCall, stats: dict[str, Any]) -> None:
        record.add_client_stats(stats)

    # ---- sampling ------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.sample_all()
            except Exception:
                log.exception("quality sampling failed")

    async def sample_all(self) -> None:
        for record in list(self._live.values()):
            session = record.session
            if session is None or getattr(session, "closed", False):
                continue
            peer_connection = getattr(session.transport, "peer_connection", None)
            if peer_connection is None:
                continue  # a WebSocket call: no RTP to measure
            try:
                report = await peer_connection.getStats()
            except Exception as exc:  # a peer connection closing under us
                log.debug("call %s: getStats failed: %s", record.call_id, exc)
                continue
            self.add_reading(record, reading_from_report(report))
        changed = [r for r in self._live.values() if r.dirty]
        for record in changed:
            record.dirty = False
        if changed:
            self._publish({"type": "calls.updated", "calls": [r.summary() for r in changed]})

    def add_reading(self, record: MonitoredCall, reading: Any) -> QualitySample | None:
        if reading.packets_received == 0 and reading.packets_sent == 0:
            return None  # not connected yet
        client = record.client_stats[-1] if record.client_stats else {}
        sample = record.tracker.update(
            reading, client_jitter_buffer_ms=_number(client.get("jitter_buffer_ms"))
        )
        record.samples.append(sample)
        record.dirty = True
        m = self.metrics
        if sample.loss_in_pct is not None:
            m.packet_loss.labels("in").observe(sample.loss_in_pct / 100)
        if sample.loss_out_pct is not None:
            m.packet_loss.labels("out").observe(sample.loss_out_pct / 100)
        if sample.jitter_in_ms is not None:
            m.jitter.labels("in").observe(sample.jitter_in_ms / 1000)
        if sample.jitter_out_ms is not None:
            m.jitter.labels("out").observe(sample.jitter_out_ms / 1000)
        if sample.rtt_ms is not None:
            m.rtt.observe(sample.rtt_ms / 1000)
        if sample.mos is not None:
            m.mos.observe(sample.mos)
        return sample


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


class _Watch(CallObserver):
    """Feeds one call's typed hooks into the monitor's record of it."""

    def __init__(self, monitor: CallMonitor, record: MonitoredCall) -> None:
        self._monitor = monitor
        self._record = record

    def speech_started(self) -> None:
        self._record.speech_started_at = time.monotonic()

    def playback_started(self, response_id: str) -> None:
        self._record.playing_since = time.monotonic()

    def response_finished(self, outcome: ResponseOutcome) -> None:
        self._monitor.response_finished(self._record, outcome)

    def error(self, code: str) -> None:
        self._monitor.error(self._record, code)

    def engine_fault(self, stage: str, code: str) -> None:
        self._monitor.engine_fault(self._record, stage, code)

    def client_stats(self, stats: dict[str, Any]) -> None:
        self._monitor.client_stats(self._record, stats)
