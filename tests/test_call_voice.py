"""The engine side of voices: references, the refusal on engines that cannot clone, a
stored profile and the caller's own voice spoken by F5 (tiny random-init model).

The voice store itself (upload, CRUD, per-tenant storage) lives in `server/store/`; here
a fake resolver named as such stands in for it, holding references built in the test.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from server.call.ports import CallControlError
from server.call.voice import CallVoice
from server.engines.base import Transcript
from server.engines.voices import (
    CALLER_VOICE,
    VoiceError,
    VoiceReference,
    check_voice,
    needs_reference,
)
from tests.speech import speak


class FakeVoiceStore:
    """In-memory profiles per tenant (the real store is server/store's)."""

    def __init__(self, profiles: dict[tuple[str, str], VoiceReference]) -> None:
        self.profiles = profiles
        self.lookups: list[tuple[str, str]] = []

    async def resolve(self, tenant: str, voice_id: str) -> VoiceReference | None:
        self.lookups.append((tenant, voice_id))
        await asyncio.sleep(0.01)
        return self.profiles.get((tenant, voice_id))


class NotCloningTTS:
    """Stands for Piper or espeak: an engine with no `clones_voices`."""

    name = "piper"
    sample_rate = 22050


def test_a_reference_must_be_usable() -> None:
    pcm = np.zeros(16000 * 3, np.int16)
    assert VoiceReference(pcm, 16000, "Hello there.").duration_s == 3.0
    with pytest.raises(VoiceError, match="mono"):
        VoiceReference(np.zeros((2, 16000), np.int16), 16000, "Hi.")
    with pytest.raises(VoiceError, match=r"1-30 s, not 0\.5 s"):
        VoiceReference(np.zeros(8000, np.int16), 16000, "Hi.")
    with pytest.raises(VoiceError, match="transcript"):
        VoiceReference(pcm, 16000, "  ")
    assert needs_reference("voice_abc") and needs_reference(CALLER_VOICE)
    assert not needs_reference("joe") and not needs_reference("alloy")


@pytest.mark.parametrize("voice", ["voice_1234", "caller"])
def test_an_engine_that_cannot_clone_refuses_cloned_voices(voice: str) -> None:
    from server.engines.piper_tts import PiperTTS

    for engine in (PiperTTS(), NotCloningTTS()):
        with pytest.raises(VoiceError, match="cannot clone voices") as refused:
            check_voice(engine, voice)
        assert refused.value.code == "voice_not_supported"
        assert "HARK_TTS=f5" in refused.value.message
        call_voice = CallVoice(engine, call_id="rtc_x")  # type: ignore[arg-type]
        with pytest.raises(CallControlError) as error:
            call_voice.change("joe", voice)
        assert error.value.param == "session.audio.output.voice"
        assert call_voice.tts is engine  # nothing wrapped: Piper speaks as before
    check_voice(PiperTTS(), "alloy")  # built-in names are fine


def transcript(text: str, logprob: float = -0.3) -> Transcript:
    return Transcript(text=text, no_speech_prob=0.01, avg_logprob=logprob, duration=3.0)


def test_the_callers_first_clean_utterance_becomes_the_reference_only_when_opted_in() -> None:
    class CloningStandIn(NotCloningTTS):
        clones_voices = True

    voice = CallVoice(CloningStandIn(), call_id="rtc_x")  # type: ignore[arg-type]
    question = speak("What is the tallest mountain in the whole world?")
    words = "What is the tallest mountain in the whole world?"
    assert not voice.hear(question, transcript(words), "joe")  # not opted in: nothing kept
    assert voice.caller_reference is None
    assert not voice.hear(question[:8000], transcript("Yes."), CALLER_VOICE)  # too short
    assert not voice.hear(question, transcript(words, logprob=-1.5), CALLER_VOICE)  # unsure
    assert not voice.hear(question // 100, transcript(words), CALLER_VOICE)  # too quiet
    assert voice.hear(question, transcript(words), CALLER_VOICE)
    reference = voice.caller_reference
    assert reference is not None and reference.text == words and reference.sample_rate == 16000
    assert not voice.hear(speak("Another thing I said later."), transcript("x y z"), CALLER_VOICE)
    assert voice.caller_reference is reference  # the first clean one stays


async def test_a_stored_profile_is_looked_up_per_tenant_and_a_missing_one_rejected() -> None:
    class CloningStandIn(NotCloningTTS):
        clones_voices = True

    mine = VoiceReference(speak("This is how I sound."), 16000, "This is how I sound.")
    store = FakeVoiceStore({("tenant-a", "voice_mine"): mine})
    rejected: list[tuple[str, str]] = []
    voice = CallVoice(
        CloningStandIn(),  # type: ignore[arg-type]
        call_id="rtc_x",
        tenant="tenant-a",
        resolver=store,
        on_rejected=lambda previous, error: rejected.append((previous, error.code)),
    )
    voice.change("joe", "voice_mine")
    assert await voice.reference("voice_mine") is mine
    voice.change("voice_mine", "voice_theirs")  # another tenant's, or none at all
    assert await voice.reference("voice_theirs") is None
    await asyncio.sleep(0)
    assert rejected == [("voice_mine", "voice_not_found")]
    assert store.lookups == [("tenant-a", "voice_mine"), ("tenant-a", "voice_theirs")]
    with pytest.raises(CallControlError, match="no voice store"):
        CallVoice(CloningStandIn(), call_id="rtc_y").check("voice_mine")  # type: ignore[arg-type]


async def test_f5_speaks_a_profile_and_the_callers_voice(tmp_path) -> None:
    pytest.importorskip("torch", reason="the gpu extra")
    pytest.importorskip("f5_tts", reason="the gpu extra")
    from server.engines.f5.synthesis import F5Options
    from server.engines.f5_tts import F5TTS
    from tests.f5_models import voiced_reference, write_random_f5

    engine = F5TTS(F5Options(nfe_steps=4), write_random_f5(tmp_path), device="cpu", max_batch=1)
    await engine.load()
    try:
        slow = voiced_reference(seconds=8.0, text="Slow words.")
        store = FakeVoiceStore({("t", "voice_slow"): slow})
        voice = CallVoice(engine, call_id="rtc_f5", tenant="t", resolver=store)
        assert voice.tts is not engine and voice.tts.sample_rate == 24000
        text = "Nice to meet you."

        async def spoken(name: str) -> int:
            return sum([len(c) async for c in voice.tts.synthesize(text, name)])

        default = await spoken("joe")
        voice.change("joe", "voice_slow")
        profile = await spoken("voice_slow")
        assert profile > 2 * default  # the slow talker's pace: its reference was used
        question = speak("Could you tell me what the weather is like today?")
        assert await spoken(CALLER_VOICE) == default  # no clean utterance yet: default
        assert voice.hear(
            question, transcript("Could you tell me what the weather is like?"), CALLER_VOICE
        )
        caller = await spoken(CALLER_VOICE)
        assert caller != default
        served = {keys[0] for keys in engine._queue.served}
        assert served == {"rtc_f5"}  # the call's own turn in the round robin
    finally:
        engine.close()
