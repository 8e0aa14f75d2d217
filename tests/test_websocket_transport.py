"""The WebSocket transport against a fake socket and a real paced track: how reply audio
becomes `response.output_audio.delta` events, what is never sent, and the socket's bounds.
The session is a named fake here; tests/test_websocket_e2e.py runs the real one."""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import dataclass, field

import numpy as np
import pytest

from media.outbound import OutboundAudioTrack
from server.call.socket_writer import SocketWriter
from server.call.websocket_transport import MAX_QUEUED_BYTES, SEND_AHEAD_S, WebSocketTransport
from server.protocol.audio_format import AudioFormat
from server.protocol.session_config import SessionConfig


@dataclass
class FakeItem:
    id: str


@dataclass
class FakeRun:
    id: str
    item: FakeItem


@dataclass
class FakeReplies:
    current: FakeRun | None = None


@dataclass
class FakeSession:
    """What the transport reads of a session (a fake: no engines)."""

    config: SessionConfig = field(default_factory=SessionConfig)
    replies: FakeReplies = field(default_factory=FakeReplies)
    errors: list[str] = field(default_factory=list)

    def report_error(self, type_: str, code: str, message: str) -> None:
        self.errors.append(code)


class FakeSocket:
    def __init__(self, *, stuck: bool = False) -> None:
        self.sent: list[dict] = []
        self.closed: tuple[int, bytes] | None = None
        self._stuck = stuck

    async def send_str(self, data: str) -> None:
        if self._stuck:
            await asyncio.Event().wait()  # a client that never reads
        self.sent.append(json.loads(data))

    async def close(self, *, code: int = 1000, message: bytes = b"") -> bool:
        self.closed = (code, message)
        return True


def tone(seconds: float, rate: int = 48000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (6000 * np.sin(2 * np.pi * 300 * t)).astype(np.int16)


def build(session: FakeSession | None = None):
    track = OutboundAudioTrack(send_ahead_s=SEND_AHEAD_S)
    session = session or FakeSession()
    calls: dict[str, list] = {"audio": [], "messages": [], "opened": [], "failed": []}
    transport = WebSocketTransport(
        track,
        name="ws_test",
        on_audio=lambda frame, end_ms: calls["audio"].append((frame, end_ms)),
        on_message=calls["messages"].append,
        on_channel_open=lambda: calls["opened"].append(True),
        on_failed=calls["failed"].append,
    )
    transport.bind(session, append_burst_s=5.0)
    return track, session, transport, calls


def deltas(socket: FakeSocket) -> list[dict]:
    return [e for e in socket.sent if e["type"] == "response.output_audio.delta"]


def delta_bytes(event: dict) -> int:
    return len(base64.b64decode(event["delta"]))


async def play(track: OutboundAudioTrack, response_id: str, pcm: np.ndarray) -> None:
    track.begin_response(response_id)
    track.push(pcm, 48000)
    track.end_response()
    await asyncio.wait_for(track.wait_drained(), 5)


async def test_a_reply_becomes_a_prompt_first_delta_then_100_ms_deltas() -> None:
    track, session, transport, calls = build()
    session.replies.current = FakeRun("resp_1", FakeItem("item_1"))
    socket = FakeSocket()
    transport.open(socket)
    assert calls["opened"] == [True] and transport.connection_state == "connected"
    try:
        await play(track, "resp_1", tone(0.5))
        await asyncio.sleep(0.3)  # the writer task sends; nothing more may come
        sent = deltas(socket)
        sizes = [delta_bytes(d) for d in sent]
        # 24 kHz PCM16: 20 ms = 960 bytes (the resampler holds back a few samples at first).
        assert 0 < sizes[0] <= 960
        assert all(s == 4800 for s in sizes[1:-1]), sizes
        assert abs(sum(sizes) - 24000) <= 64, sizes
        assert {(d["response_id"], d["item_id"]) for d in sent} == {("resp_1", "item_1")}
        pcm = np.frombuffer(b"".join(base64.b64decode(d["delta"]) for d in sent), "<i2")
        assert np.sqrt(np.mean(pcm.astype(float) ** 2)) > 3000  # the tone, not silence
        count = len(socket.sent)
        await asyncio.sleep(0.2)
        assert len(socket.sent) == count  # the silence after a reply is never sent
    finally:
        track.stop()
        await transport.close()


async def test_a_cut_reply_sends_what_the_track_counted_before_its_end_is_told() -> None:
    track, session, transport, _ = build()
    session.replies.current = FakeRun("resp_2", FakeItem("item_2"))
    socket = FakeSocket()
    transport.open(socket)
    try:
        track.begin_response("resp_2")
        track.push(tone(3.0), 48000)
        for _ in range(500):  # until a few deltas went out
            if len(deltas(socket)) >= 4:
                break
            await asyncio.sleep(0.01)
        # What ResponseRun.cancel does: clear the track, then announce the end.
        played_ms = track.clear()
        transport.send_event(json.dumps({"type": "response.done"}))
        await asyncio.sleep(0.2)
        types = [e["type"] for e in socket.sent]
        done_at = types.index("response.done")
        assert "response.output_audio.delta" not in types[done_at:]
        sent_ms = sum(delta_bytes(d) for d in deltas(socket)) / 48  # 48 bytes per ms
        assert abs(sent_ms - played_ms) <= 5, (sent_ms, played_ms)
        assert played_ms < 3000
    finally:
        track.stop()
        await transport.close()


async def test_output_in_g711_is_8_khz_bytes() -> None:
    session = FakeSession(SessionConfig().apply({"audio": {"output": {"format": "g711_ulaw"}}}))
    track, session, transport, _ = build(session)
    session.replies.current = FakeRun("resp_3", FakeItem("item_3"))
    socket = FakeSocket()
    transport.open(socket)
    try:
        await play(track, "resp_3", tone(0.5))
        await asyncio.sleep(0.1)
        assert abs(sum(delta_bytes(d) for d in deltas(socket)) - 4000) <= 16
    finally:
        track.stop()
        await transport.close()


async def test_audio_of_a_reply_that_is_no_longer_current_is_not_sent() -> None:
    track, _session, transport, _ = build()
    socket = FakeSocket()
    transport.open(socket)
    try:
        await play(track, "resp_gone", tone(0.2))  # session.replies.current is None
        await asyncio.sleep(0.1)
        assert deltas(socket) == []
    finally:
        track.stop()
        await transport.close()


async def test_frames_go_to_the_session_in_order_and_receive_waits_for_them() -> None:
    track, _session, transport, calls = build()
    transport.open(FakeSocket())
    second = base64.b64encode(np.zeros(24000, "<i2").tobytes()).decode()

    def dispatch(raw: str | bytes) -> None:  # what the client-event dispatcher would do
        transport.append_input(json.loads(raw)["audio"], AudioFormat())

    transport._on_message = dispatch
    try:
        await transport.receive(json.dumps({"audio": second}))
        frames = calls["audio"]
        assert len(frames) >= 30  # one second at 16 kHz in 32 ms frames, all listened to
        assert [end for _, end in frames] == sorted(end for _, end in frames)
        assert transport.last_audio_at is not None
    finally:
        track.stop()
        await transport.close()


async def test_binary_frames_are_refused_with_an_error() -> None:
    track, session, transport, calls = build()
    transport.open(FakeSocket())
    try:
        await transport.receive(b"\x00\x01")
        await transport.receive('{"type": "x"}')
        assert session.errors == ["invalid_event"]
        assert calls["messages"] == ['{"type": "x"}']
    finally:
        track.stop()
        await transport.close()


@pytest.mark.parametrize(("reason", "code"), [("hangup", 1000), ("server_shutdown", 1001)])
async def test_closing_tells_the_client_why(reason: str, code: int) -> None:
    track, _, transport, _ = build()
    socket = FakeSocket()
    transport.open(socket)
    track.stop()
    await transport.close(reason)
    assert socket.closed == (code, f"call ended: {reason}".encode())
    assert transport.connection_state == "closed"


async def test_a_client_that_stops_reading_is_cut_off_not_buffered_forever() -> None:
    failed: list[bool] = []
    writer = SocketWriter(
        FakeSocket(stuck=True), name="t", max_bytes=1000, on_overflow=lambda: failed.append(True)
    )
    writer.start()
    sent = [writer.send("x" * 300) for _ in range(5)]
    assert sent == [True, True, True, False, False] and failed == [True]
    await writer.close()
    assert MAX_QUEUED_BYTES >= 4 * 1024 * 1024  # the transport's own bound: ~40 s of audio
