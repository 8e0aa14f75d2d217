"""The operator's view of every call: quality samples, turns, barge-ins, the client's own stats.

`CallMonitor` hooks into the `CallManager` (call started/ended) and into each session's
event listeners (`hark.metrics`, `response.done`, barge-ins, `error`). A single sampler
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

from server.call_quality import QualitySample, QualityTracker, reading_from_report
from server.prometheus_metrics import HarkMetrics

if TYPE_CHECKING:
    from server.session import RealtimeSession

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
class CallRecord:
    call_id: str
    session: RealtimeSession | None
    started_at: float = field(default_factory=time.time)
    ended_at: float | None = None
    end_reason: str | None = None
    tracker: QualityTracker = field(default_factory=QualityTracker)
    samples: deque[QualitySample] = field(default_factory=lambda: deque(maxlen=MAX_SAMPLES))
    turns: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=MAX_TURNS))
    client_stats: deque[dict[str, Any]] = field(
        default_factory=lambda: deque(maxlen=MAX_CLIENT_STATS)
    )
    turn_count: int = 0
    barge_ins: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    dirty: bool = True
    # Barge-in bookkeeping (monotonic times) and the status of recent responses.
    _playing_since: float | None = None
    _speech_started: float | None = None
    _stop_ms: dict[str, float] = field(default_factory=dict)
    _status: dict[str, tuple[str, str | None]] = field(default_factory=dict)

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
            "ended_at": self.ended_at,
            "end_reason": self.end_reason,
            "grade": grade(latest.get("mos")),
            "issues": quality_issues(latest, client),
            "quality": latest,
            "loss_total": self.tracker.totals(),
            "turns": self.turn_count,
            "barge_ins": self.barge_ins,
            "errors": sum(self.errors.values()),
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
        self._live: dict[str, CallRecord] = {}
        self._ended: OrderedDict[str, CallRecord] = OrderedDict()
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
        record = CallRecord(session.call_id, session, started_at=session.created_at)
        self._live[session.call_id] = record
        session.listeners.append(lambda event: self._on_event(record, event))
        hooks = getattr(session, "client_stats_listeners", None)
        if hooks is not None:
            hooks.append(lambda stats: self.client_stats(record, stats))
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

    def get(self, call_id: str) -> CallRecord | None:
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

    # ---- session events ------------------------------------------------------------------

    def _on_event(self, record: CallRecord, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "output_audio_buffer.started":
            record._playing_since = time.monotonic()
        elif kind == "input_audio_buffer.speech_started":
            record._speech_started = time.monotonic()
        elif kind == "output_audio_buffer.cleared":
            self._on_cleared(record, str(event.get("response_id") or ""))
        elif kind == "response.done":
            response = event.get("response") or {}
            details = response.get("status_details") or {}
            status = str(response.get("status") or "unknown")
            reason = details.get("reason") if isinstance(details, dict) else None
            record._status[str(response.get("id"))] = (status, reason)
            if status == "cancelled" and reason == "turn_detected":
                record.barge_ins += 1
                self.metrics.barge_ins.inc()
            elif status == "failed":
                self._count_error(record, "response_failed")
            record.dirty = True
        elif kind == "hark.metrics":
            self._on_turn(record, event)
        elif kind == "error":
            error = event.get("error") or {}
            self._count_error(record, str(error.get("code") or error.get("type") or "unknown"))

    def _count_error(self, record: CallRecord, code: str) -> None:
        record.errors[code] = record.errors.get(code, 0) + 1
        self.metrics.error(code)
        record.dirty = True

    def _on_cleared(self, record: CallRecord, response_id: str) -> None:
        """A reply cut off after the user started speaking over it: time the stop."""
        started, playing = record._speech_started, record._playing_since
        if started is None or playing is None or started < playing:
            return
        record._stop_ms[response_id] = (time.monotonic() - started) * 1000
        record._playing_since = None
        while len(record._stop_ms) > 20:
            del record._stop_ms[next(iter(record._stop_ms))]

    def _on_turn(self, record: CallRecord, event: dict[str, Any]) -> None:
        timings = event.get("turn")
        if not isinstance(timings, dict):
            return
        response_id = str(event.get("response_id") or "")
        status, reason = record._status.pop(response_id, ("unknown", None))
        turn: dict[str, Any] = {
            "response_id": response_id,
            "at": round(time.time(), 3),
            "status": status,
            "reason": reason,
        }
        for key, value in timings.items():
            if isinstance(value, int | float | str) or value is None:
                turn[key] = value
        stop = _number(timings.get("barge_in_stop_ms"))
        if stop is None:
            stop = record._stop_ms.pop(response_id, None)
        turn["barge_in_stop_ms"] = None if stop is None else round(stop, 1)
        from_speech = timings.get("measured_from") == "speech_end"
        first_frame = _number(timings.get("first_frame_sent_ms"))
        turn["voice_to_voice_ms"] = first_frame if from_speech else None
        record.turns.append(turn)
        record.turn_count += 1
        record.dirty = True
        m = self.metrics
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

    def client_stats(self, record: CallRecord, stats: dict[str, Any]) -> None:
        record.client_stats.append({"at": round(time.time(), 3), **stats})
        record.dirty = True

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
            try:
                report = await session.peer_connection.getStats()
            except Exception as exc:  # a peer connection closing under us
                log.debug("call %s: getStats failed: %s", record.call_id, exc)
                continue
            self.add_reading(record, reading_from_report(report))
        changed = [r for r in self._live.values() if r.dirty]
        for record in changed:
            record.dirty = False
        if changed:
            self._publish({"type": "calls.updated", "calls": [r.summary() for r in changed]})

    def add_reading(self, record: CallRecord, reading: Any) -> QualitySample | None:
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
