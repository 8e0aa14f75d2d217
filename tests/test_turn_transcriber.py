"""The transcript begun at a pause: what Whisper is given, and when the turn reuses it."""

from __future__ import annotations

import numpy as np

from server.engines.base import Transcript
from server.turns.transcriber import PAUSE_TAIL_S, SAMPLE_RATE, TurnTranscriber


class FakeSTT:
    """A fake speech-to-text engine that keeps what it was given and names its length."""

    def __init__(self) -> None:
        self.heard: list[np.ndarray] = []

    async def transcribe_detailed(
        self, audio: np.ndarray, language: str | None = None
    ) -> Transcript:
        self.heard.append(audio)
        return Transcript(f"{audio.size} samples", 0.0, -0.1, audio.size / SAMPLE_RATE)


def voice(ms: int) -> np.ndarray:
    return np.full(ms * SAMPLE_RATE // 1000, 1000, dtype=np.int16)


async def test_the_pause_audio_is_heard_with_digital_silence_after_it() -> None:
    stt = FakeSTT()
    so_far = voice(1500)
    await TurnTranscriber(stt).start(so_far)  # type: ignore[arg-type]
    (heard,) = stt.heard
    tail = int(PAUSE_TAIL_S * SAMPLE_RATE)
    assert heard.dtype == so_far.dtype and heard.size == so_far.size + tail
    assert np.array_equal(heard[: so_far.size], so_far) and not heard[so_far.size :].any()


async def test_the_turn_reuses_the_pause_transcript_when_only_silence_followed() -> None:
    stt = FakeSTT()
    transcriber = TurnTranscriber(stt)  # type: ignore[arg-type]
    so_far = voice(1500)
    early = transcriber.start(so_far)
    turn = np.concatenate([so_far, np.zeros(SAMPLE_RATE // 2, np.int16)])
    job, reused = transcriber.final(turn)
    assert reused and job is early
    assert (await job).text == f"{so_far.size + int(PAUSE_TAIL_S * SAMPLE_RATE)} samples"
    assert len(stt.heard) == 1


async def test_speech_after_the_pause_is_transcribed_again_whole() -> None:
    stt = FakeSTT()
    transcriber = TurnTranscriber(stt)  # type: ignore[arg-type]
    transcriber.start(voice(1500))
    transcriber.discard()  # the user spoke on
    turn = voice(2500)
    job, reused = transcriber.final(turn)
    assert not reused and (await job).text == f"{turn.size} samples"


async def test_a_sound_going_on_past_the_pause_is_transcribed_again_whole() -> None:
    """The pause fell inside a word's unvoiced end (its /s/): the VAD heard silence after
    it, but the microphone did not."""
    stt = FakeSTT()
    transcriber = TurnTranscriber(stt)  # type: ignore[arg-type]
    so_far = voice(1500)
    transcriber.start(so_far)
    rng = np.random.default_rng(0)
    hiss = (rng.standard_normal(SAMPLE_RATE // 10) * 300).astype(np.int16)  # 100 ms of /s/
    quiet = (rng.standard_normal(SAMPLE_RATE // 2) * 10).astype(np.int16)
    turn = np.concatenate([so_far, hiss, quiet])
    job, reused = transcriber.final(turn)
    assert not reused and (await job).text == f"{turn.size} samples"
    # The same turn with the room's noise after the pause (no /s/) reuses it.
    transcriber.start(so_far)
    job, reused = transcriber.final(np.concatenate([so_far, quiet, quiet]))
    assert reused
