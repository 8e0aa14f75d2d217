"""The E-model, the getStats reader, the quality tracker and client stats validation."""

from __future__ import annotations

import math

import pytest

from server.call.observer import ResponseOutcome
from server.ops.monitor import CallMonitor, MonitoredCall, _Watch, grade, worst_first
from server.ops.mos import delay_impairment, estimate_mos, loss_impairment, mos_from_r, r_factor
from server.ops.prometheus import HarkMetrics
from server.ops.quality import QualityTracker, StatsReading, reading_from_report
from server.protocol.client_stats import ClientStatsError, parse_client_stats


def test_emodel_reference_points() -> None:
    # G.107's default connection rates R = 93.2, which maps to MOS 4.41.
    assert r_factor(0, 0) == pytest.approx(93.2)
    assert mos_from_r(93.2) == pytest.approx(4.41, abs=0.01)
    # Idd is zero up to 100 ms one way and grows steeply past it (G.107 §7.4).
    assert delay_impairment(100) == 0
    assert delay_impairment(200) == pytest.approx(3.05, abs=0.05)
    assert delay_impairment(400) == pytest.approx(24.1, abs=0.2)
    # Ie,eff: no loss → the codec's Ie; all loss → 95.
    assert loss_impairment(0) == 0
    assert loss_impairment(100) == pytest.approx(95 * 100 / 120)
    assert loss_impairment(5) == pytest.approx(95 * 5 / 25)
    assert mos_from_r(-5) == 1.0 and mos_from_r(120) == 4.5


def test_mos_falls_with_loss_and_delay() -> None:
    clean = estimate_mos(rtt_ms=20, jitter_ms=2, loss_pct=0)
    lossy = estimate_mos(rtt_ms=20, jitter_ms=2, loss_pct=5)
    slow = estimate_mos(rtt_ms=600, jitter_ms=2, loss_pct=0)
    both = estimate_mos(rtt_ms=600, jitter_ms=30, loss_pct=10)
    assert clean == pytest.approx(4.41, abs=0.01)
    assert clean > lossy > both and clean > slow > both
    assert grade(clean) == "good" and grade(both) == "poor" and grade(None) == "unknown"


def fake_report(*, received: int, lost: int, sent: int, rx: int, tx: int, rr_lost: int) -> list:
    """Dicts shaped like aiortc's RTCStatsReport entries (jitter in 48 kHz RTP units)."""
    return [
        {
            "type": "inbound-rtp",
            "kind": "audio",
            "packetsReceived": received,
            "packetsLost": lost,
            "jitter": 480,
        },
        {"type": "outbound-rtp", "kind": "audio", "packetsSent": sent, "bytesSent": 0},
        {"type": "transport", "bytesReceived": rx, "bytesSent": tx},
        {
            "type": "remote-inbound-rtp",
            "kind": "audio",
            "packetsLost": rr_lost,
            "fractionLost": 64,  # RTCP's 8-bit fraction: 64/256 = 25 %
            "jitter": 96,
            "roundTripTime": 0.15,
        },
    ]


def test_reading_and_tracker_turn_counters_into_rates() -> None:
    first = reading_from_report(
        fake_report(received=100, lost=0, sent=100, rx=10_000, tx=20_000, rr_lost=0), at=10.0
    )
    assert first.jitter_in_ms == pytest.approx(10.0)
    assert first.jitter_out_ms == pytest.approx(2.0)
    assert first.rtt_ms == pytest.approx(150.0)
    assert first.remote_fraction_lost == pytest.approx(0.25)
    second = reading_from_report(
        fake_report(received=190, lost=10, sent=200, rx=20_000, tx=45_000, rr_lost=20), at=12.0
    )
    tracker = QualityTracker()
    assert tracker.update(first).loss_in_pct is None  # no interval yet
    sample = tracker.update(second)
    assert sample.loss_in_pct == pytest.approx(10.0)  # 10 lost of 100 expected
    assert sample.loss_out_pct == pytest.approx(25.0)
    assert sample.bitrate_in_kbps == pytest.approx(10_000 * 8 / 2 / 1000)
    assert sample.bitrate_out_kbps == pytest.approx(25_000 * 8 / 2 / 1000)
    assert sample.mos is not None and sample.mos < 3.5
    assert tracker.totals() == {"loss_in_pct": 5.0, "loss_out_pct": 10.0}


def test_monitor_orders_worst_first_and_feeds_metrics() -> None:
    monitor = CallMonitor(HarkMetrics())
    records = {}
    for call_id, lost in (("rtc_good", 0), ("rtc_bad", 30), ("rtc_new", None)):
        record = MonitoredCall(call_id, None)
        records[call_id] = record
        monitor._live[call_id] = record
        if lost is None:
            continue  # not connected yet: no sample, listed last
        for at, (received, missed) in enumerate(((100, 0), (200 - lost, lost))):
            monitor.add_reading(
                record,
                StatsReading(at=float(at), packets_received=received, packets_lost=missed),
            )
    order = [s["id"] for s in monitor.summaries()]
    assert order == ["rtc_bad", "rtc_good", "rtc_new"]
    assert sorted(monitor.summaries(), key=worst_first) == monitor.summaries()
    text = monitor.metrics.exposition().decode()
    # one interval per call with two readings (the first reading has no interval)
    assert 'hark_packet_loss_ratio_count{direction="in"} 2.0' in text


def test_monitor_records_turns_barge_ins_and_errors() -> None:
    monitor = CallMonitor(HarkMetrics())
    record = MonitoredCall("rtc_x", None)
    watch = _Watch(monitor, record)
    watch.playback_started("r1")
    watch.speech_started()
    watch.response_finished(
        ResponseOutcome(
            response_id="r1",
            status="cancelled",
            reason="turn_detected",
            transcript="Once upon",
            timings={
                "stt_ms": 700.0,
                "first_frame_sent_ms": 1500.0,
                "measured_from": "speech_end",
                "barge_in_stop_ms": None,
            },
            audio_cut=True,
        )
    )
    watch.error("invalid_value")
    turn = record.turns[-1]
    assert turn["status"] == "cancelled" and turn["reason"] == "turn_detected"
    assert turn["voice_to_voice_ms"] == 1500.0 and turn["barge_in_stop_ms"] is not None
    assert record.barge_ins == 1 and record.errors == {"invalid_value": 1}
    text = monitor.metrics.exposition().decode()
    assert "hark_barge_in_stop_seconds_count 1.0" in text
    assert 'hark_errors_total{type="invalid_value"} 1.0' in text
    assert "hark_voice_to_voice_seconds_count 1.0" in text


def test_a_cut_before_the_user_spoke_is_no_barge_in_stop() -> None:
    """The client cleared the buffer itself while nobody spoke over the reply."""
    monitor = CallMonitor(HarkMetrics())
    record = MonitoredCall("rtc_y", None)
    watch = _Watch(monitor, record)
    watch.speech_started()
    watch.playback_started("r2")
    outcome = ResponseOutcome("r2", "cancelled", "client_cancelled", "", {}, audio_cut=True)
    watch.response_finished(outcome)
    assert record.turns[-1]["barge_in_stop_ms"] is None and record.barge_ins == 0


def test_client_stats_validation() -> None:
    assert parse_client_stats({"rtt_ms": 12.3456, "loss_pct": None}) == {
        "rtt_ms": 12.346,
        "loss_pct": None,
    }
    bad = [
        "not an object",
        {"rtt_ms": "12"},
        {"rtt_ms": True},
        {"rtt_ms": -1},
        {"loss_pct": 101},
        {"jitter_ms": math.inf},
        {"mystery": 1},
        {f"k{i}": 1 for i in range(40)},
    ]
    for raw in bad:
        with pytest.raises(ClientStatsError):
            parse_client_stats(raw)


def test_issues_say_why_a_call_suffers() -> None:
    from server.ops.monitor import quality_issues

    assert quality_issues({"loss_in_pct": 0.5, "rtt_ms": 40, "jitter_in_ms": 5}, None) == []
    issues = quality_issues(
        {"loss_in_pct": 1.0, "loss_out_pct": 12.4, "rtt_ms": 420, "jitter_out_ms": 45},
        {"jitter_buffer_ms": 350, "concealed_pct": 9},
    )
    assert issues == [
        "loss 12%",
        "RTT 420 ms",
        "jitter 45 ms",
        "client buffer 350 ms",
        "concealed 9%",
    ]


async def test_a_slow_stream_reader_gets_a_fresh_snapshot_instead_of_a_backlog() -> None:
    from server.ops.monitor import SUBSCRIBER_QUEUE

    monitor = CallMonitor(HarkMetrics())
    subscription = monitor.subscribe()
    subscription.needs_snapshot = False  # as after the first snapshot
    for index in range(SUBSCRIBER_QUEUE + 5):
        monitor._publish({"type": "calls.updated", "calls": [], "n": index})
    assert subscription.needs_snapshot
    backlog = [subscription.queue.get_nowait() for _ in range(subscription.queue.qsize())]
    assert backlog[0] == {"type": "resync"} and len(backlog) < SUBSCRIBER_QUEUE
    monitor.unsubscribe(subscription)
    monitor._publish({"type": "calls.updated", "calls": []})
    assert subscription.queue.empty()
