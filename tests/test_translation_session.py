"""The translation session core without a server: real Silero and segmenter on real speech,
a `FakeInterpreter` (scripted translations, a fixed tone as speech) so what is checked is
exact: segmentation at pauses, order, `elapsed_ms`, append-only deltas, errors that leave
the session alive, and `session.close` flushing what was said."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest

from media.vad import SileroModel
from server.translation.interpreter import Interpretation
from server.translation.pairs import Capabilities
from server.translation.session import TranslationSession
from server.translation.settings import TranslationSettings
from tests.speech import silence, speak

FRAME = 512


class FakeInterpreter:
    """Scripted: each segment 'translates' to the next of `texts`; speech is 100 ms of tone."""

    def __init__(self, texts: list[str]) -> None:
        self.capabilities = Capabilities(multilingual=True, llm=False)
        self.texts = list(texts)
        self.heard: list[int] = []

    async def interpret(self, audio: np.ndarray, source: str | None, target: str):
        self.heard.append(len(audio))
        return Interpretation("es", f"fuente {len(self.heard)}", self.texts.pop(0))

    def prepare(self, language: str) -> None:
        return None

    async def speak(self, text: str, language: str) -> AsyncIterator[tuple[np.ndarray, int]]:
        yield np.full(2400, 1000, np.int16), 24_000


class FakeAudioOut:
    def __init__(self) -> None:
        self.played: list[tuple[str, int, int]] = []
        self._segment = ""

    def begin(self, segment_id: str) -> None:
        self._segment = segment_id

    def play(self, pcm: np.ndarray, rate: int, elapsed_ms: int) -> None:
        self.played.append((self._segment, len(pcm), elapsed_ms))

    async def end(self) -> None:
        return None


@pytest.fixture(scope="module")
def vad() -> SileroModel:
    return SileroModel.load()


def session_with(vad: SileroModel, texts: list[str]):
    events: list[dict[str, Any]] = []
    out = FakeAudioOut()
    settings = TranslationSettings().apply({"audio": {"input": {"transcription": {"model": "w"}}}})
    interpreter = FakeInterpreter(texts)
    session = TranslationSession(
        "sess_test", settings, interpreter, vad,  # type: ignore[arg-type]
        expires_at=0, send=events.append, audio_out=out, transport="websocket",
    )  # fmt: skip
    return session, events, out, interpreter


def feed(session: TranslationSession, pcm: np.ndarray, start_ms: int = 0) -> int:
    end = start_ms
    for offset in range(0, len(pcm) - FRAME + 1, FRAME):
        end += 32
        session.on_frame(pcm[offset : offset + FRAME], end)
    return end


async def test_speech_is_cut_at_pauses_and_spoken_in_order(vad):
    session, events, out, interpreter = session_with(vad, ["Hello.", "Goodbye."])
    talk = np.concatenate(
        [silence(300), speak("Where is the station?"), silence(800), speak("Thank you.")]
    )
    feed(session, np.concatenate([talk, silence(200)]))
    await session.finish()  # the second sentence ends only with session.close
    await session.close()
    types = [e["type"] for e in events]
    assert types[-1] == "session.closed"
    source = [e for e in events if e["type"] == "session.input_transcript.delta"]
    target = [e for e in events if e["type"] == "session.output_transcript.delta"]
    assert [e["delta"] for e in source] == ["fuente 1", " fuente 2"]
    assert [e["delta"] for e in target] == ["Hello.", " Goodbye."]
    elapsed = [e["elapsed_ms"] for e in target]
    assert elapsed[0] < elapsed[1] and all(ms % 200 == 0 for ms in elapsed), elapsed
    assert len(interpreter.heard) == 2
    assert [ms for _, _, ms in out.played] == elapsed
    segments = session.stats.segments
    assert [s["text"] for s in segments] == ["Hello.", "Goodbye."]
    assert all(s["latency_ms"] is not None for s in segments)
    assert session.summary()["source_languages"] == ["es"]


async def test_bad_events_get_errors_and_the_session_goes_on(vad):
    session, events, _, _ = session_with(vad, [])
    appended: list[str] = []

    def dispatch(raw: str) -> bool:
        return session.dispatch(raw, appended.append, max_bytes=1000)

    assert not dispatch("{nope")
    assert not dispatch(json.dumps({"type": "response.create"}))
    assert not dispatch(json.dumps({"type": "session.input_audio_buffer.append", "audio": 5}))
    assert not dispatch(json.dumps({"type": "x", "pad": "a" * 2000}))
    german = {"audio": {"output": {"language": "de"}}}
    assert not dispatch(
        json.dumps({"type": "session.update", "session": german, "event_id": "ev1"})
    )
    codes = [e["error"]["code"] for e in events if e["type"] == "error"]
    assert codes == [
        "invalid_json",
        "unknown_event",
        "invalid_audio",
        "event_too_large",
        "unsupported_language_pair",
    ]
    assert events[-1]["error"]["event_id"] == "ev1"
    assert session.settings.output_language == "en"
    assert not dispatch(json.dumps({"type": "session.input_audio_buffer.append", "audio": "AAAA"}))
    assert appended == ["AAAA"]
    assert dispatch(json.dumps({"type": "session.close"}))
    await session.close()
    assert session.stats.errors == 5
