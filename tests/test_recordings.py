"""Call recordings on real files and real databases: both voices in a stereo Ogg Opus
file on one timeline, the transcript's timings, tenants, deletion that erases the file,
and the retention sweeper."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import av
import numpy as np
import pytest

from server.errors import NotFound
from server.store.conversations import ConversationStore
from server.store.recordings import RecordingStore
from server.store.writer import HistoryWriter
from tests.speech import speak
from tests.store_fixtures import fresh_database


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def pg(backend: str, request: pytest.FixtureRequest) -> str | None:
    return request.getfixturevalue("postgres_url") if backend == "postgresql" else None


def decode(path: Path) -> np.ndarray:
    """The file's samples, (n, 2) float, at 48 kHz."""
    with av.open(str(path)) as container:
        frames = [f.to_ndarray() for f in container.decode(audio=0)]
    stream = np.concatenate(frames, axis=1)  # planar float: (channels, n)
    return stream.T


def exists(path: str | Path) -> bool:
    return Path(path).exists()


def loud_seconds(channel: np.ndarray) -> list[float]:
    """The 100 ms windows (as start seconds) where the channel holds sound."""
    hop = 4800
    return [
        i / 48000
        for i in range(0, len(channel) - hop, hop)
        if np.sqrt(np.mean(channel[i : i + hop] ** 2)) > 0.01
    ]


async def record_a_call(store: RecordingStore, conversation_id: str, tenant: str = "key:a"):
    """A short call, fed in real time: the caller speaks for ~1 s at the start, the
    assistant answers from 1.5 s, both as frames arrive in a call."""
    recorder = store.start(tenant, conversation_id, "rtc_test")
    recorder.begin()
    caller = speak("Hello there, how are you?", 16000)
    assistant = speak("I am fine, thank you.", 48000)
    t0 = time.monotonic()
    caller_frames = [caller[i : i + 512] for i in range(0, len(caller) - 511, 512)]
    reply_frames = [assistant[i : i + 960] for i in range(0, len(assistant) - 959, 960)]
    audio_ms = 0
    recorder.user_turn("item_user", 0, len(caller) * 1000 // 16000)
    for frame in caller_frames:
        audio_ms += 32
        recorder.caller_audio(frame, audio_ms)
        await asyncio.sleep(0.032)
    recorder.item_done(
        {
            "id": "item_user",
            "type": "message",
            "role": "user",
            "content": [{"type": "input_audio", "transcript": "Hello there, how are you?"}],
        }
    )
    await asyncio.sleep(max(0.0, 1.5 - (time.monotonic() - t0)))
    recorder.assistant_turn("item_bot", playing=True)
    for frame in reply_frames:
        recorder.assistant_audio(frame, time.monotonic())
        await asyncio.sleep(0.02)
    recorder.assistant_turn("item_bot", playing=False)
    recorder.item_done(
        {
            "id": "item_bot",
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_audio", "transcript": "I am fine, thank you."}],
        }
    )
    recorder.close()
    await recorder.wait_closed()
    return recorder, len(caller) / 16000, 1.5, len(assistant) / 48000


async def test_both_voices_on_one_timeline_with_the_transcript(backend, pg, tmp_path):
    async with fresh_database(backend, tmp_path, pg) as db:
        conv = await ConversationStore(db).create("key:a")
        writer = HistoryWriter(db)
        writer.start()
        store = RecordingStore(db, writer, tmp_path / "recordings", retention_days=30)
        recorder, caller_s, reply_at, reply_s = await record_a_call(store, conv.id)
        await writer.flush()
        record = await store.get("key:a", recorder.id)
        assert record.status == "complete" and exists(record.path)
        audio = decode(Path(record.path))
        assert audio.shape[1] == 2
        assert abs(len(audio) / 48000 - record.duration_ms / 1000) < 0.1
        left, right = loud_seconds(audio[:, 0]), loud_seconds(audio[:, 1])
        # The caller is heard early on the left only; the reply from ~1.5 s on the right.
        assert left and left[0] < 0.3 and left[-1] < caller_s + 0.3
        assert right and abs(right[0] - reply_at) < 0.3 and right[-1] < reply_at + reply_s + 0.3
        assert not [t for t in left if t > caller_s + 0.3]
        roles = [(e["role"], e["text"]) for e in record.timeline]
        assert roles == [
            ("user", "Hello there, how are you?"),
            ("assistant", "I am fine, thank you."),
        ]
        bot = record.timeline[1]
        assert abs(bot["start_ms"] / 1000 - reply_at) < 0.3 and bot["end_ms"] > bot["start_ms"]
        shape = record.to_dict(30)
        assert shape["channels"] == ["caller", "assistant"] and shape["expires_at"] > time.time()
        # Another tenant cannot see it; deleting erases the file.
        with pytest.raises(NotFound):
            await store.get("key:b", recorder.id)
        assert [r.id for r in (await store.list("key:a")).data] == [recorder.id]
        assert (await store.list("key:b")).data == []
        await store.delete("key:a", recorder.id)
        assert not exists(record.path)
        with pytest.raises(NotFound):
            await store.get("key:a", recorder.id)
        await store.close()
        await writer.close()


async def test_the_sweeper_erases_what_is_past_retention(backend, pg, tmp_path):
    async with fresh_database(backend, tmp_path, pg) as db:
        conv = await ConversationStore(db).create("key:a")
        writer = HistoryWriter(db)
        writer.start()
        store = RecordingStore(db, writer, tmp_path / "recordings", retention_days=7)
        old, *_ = await record_a_call(store, conv.id)
        await writer.flush()
        # The first recording is made 8 days old; a second, fresh one stays.
        await db.execute(
            "UPDATE recordings SET created_at = ? WHERE id = ?", (time.time() - 8 * 86400, old.id)
        )
        new, *_ = await record_a_call(store, conv.id)
        await writer.flush()
        assert old.path.exists() and new.path.exists()
        assert await store.sweep() == 1
        assert not old.path.exists() and new.path.exists()
        assert [r.id for r in (await store.list("key:a")).data] == [new.id]
        # The sweeper task runs the same sweep on its own.
        await db.execute(
            "UPDATE recordings SET created_at = ? WHERE id = ?", (time.time() - 9 * 86400, new.id)
        )
        store.start_sweeper(interval_s=0.05)
        for _ in range(100):
            if not new.path.exists():
                break
            await asyncio.sleep(0.05)
        assert not new.path.exists()
        await store.close()
        await writer.close()
