"""The voice one call's replies speak with: a built-in voice, a stored profile, or the
caller's own.

`audio.output.voice` may name a stored profile (`voice_…`, looked up per tenant by a
`VoiceResolver`) or `caller` (self-cloning, opt-in: the caller's first clean utterance
of the call becomes the reference). Both need an engine that clones (F5-TTS); any other
engine refuses them with an `error` event, never speaking in another voice instead. A
profile that cannot be found is refused the same way, and the call keeps its previous
voice. Until the caller has said something clean, `caller` speaks the default voice.

`CallVoice.tts` is what the call's replies synthesize through: the engine itself, told
the reference and the call (for the engine's round robin between calls).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing

import numpy as np

from server.call.ports import CallControlError
from server.engines.base import TextToSpeech, Transcript
from server.engines.voices import (
    CALLER_VOICE,
    PROFILE_PREFIX,
    VoiceError,
    VoiceReference,
    VoiceResolver,
    can_clone,
    check_voice,
)
from server.engines.word_timing import TimedAudio

log = logging.getLogger("hark.voice")

INPUT_RATE = 16_000
# A caller's utterance makes a good reference when it is clean speech of a few seconds:
# Whisper is sure of its words and there is enough of it to carry the voice.
CALLER_MIN_S = 2.0
CALLER_MAX_S = 12.0
CALLER_MIN_WORDS = 3
CALLER_MIN_LOGPROB = -0.7
CALLER_MIN_RMS = 300  # int16: a voice near the microphone, not a distant murmur


class CallVoice:
    def __init__(
        self,
        tts: TextToSpeech,
        *,
        call_id: str,
        tenant: str = "",
        resolver: VoiceResolver | None = None,
        on_rejected: Callable[[str, VoiceError], None] = lambda voice, error: None,
    ) -> None:
        """`on_rejected(previous_voice, error)`: a profile turned out not to exist (the
        session tells the client and goes back to its previous voice)."""
        self._engine = tts
        self._call_id = call_id
        self._tenant = tenant
        self._resolver = resolver
        self._on_rejected = on_rejected
        self._profiles: dict[str, asyncio.Task[VoiceReference | None]] = {}
        self._caller: VoiceReference | None = None
        self.tts: TextToSpeech = _VoicedTTS(self) if can_clone(tts) else tts

    @property
    def caller_reference(self) -> VoiceReference | None:
        """The caller's own voice, once their first clean utterance was heard."""
        return self._caller

    def check(self, voice: str) -> None:
        """Refuse a voice this call cannot speak (raises `CallControlError`)."""
        try:
            check_voice(self._engine, voice)
        except VoiceError as exc:
            raise CallControlError(exc.code, exc.message, "session.audio.output.voice") from exc
        if voice.startswith(PROFILE_PREFIX) and self._resolver is None:
            raise CallControlError(
                "voice_not_found",
                f"No voice profile {voice!r}: this server has no voice store",
                "session.audio.output.voice",
            )

    def change(self, previous: str, voice: str) -> None:
        """`session.update` asks for `voice`: refused (`CallControlError`) if this call
        cannot speak it, else looked up (a profile) while the session applies it."""
        if voice != previous:
            self.check(voice)
            self.select(voice, previous)

    def select(self, voice: str, previous: str) -> None:
        """The session now speaks `voice`: start looking a profile up (cached per call)."""
        if not voice.startswith(PROFILE_PREFIX) or self._resolver is None:
            return
        if voice not in self._profiles:
            task = asyncio.create_task(self._resolve(voice), name=f"{self._call_id}-voice")
            self._profiles[voice] = task
        self._profiles[voice].add_done_callback(lambda task: self._rejected(voice, previous, task))

    def hear(self, audio: np.ndarray, heard: Transcript, voice: str) -> bool:
        """A user turn, 16 kHz int16, with its transcript: while the call speaks in the
        caller's voice (opt-in), the first clean one becomes its reference. True when it
        did; nothing of the caller's audio is kept otherwise."""
        if voice != CALLER_VOICE or self._caller is not None or not can_clone(self._engine):
            return False
        duration = len(audio) / INPUT_RATE
        words = heard.text.split()
        clean = (
            heard.has_words
            and heard.avg_logprob >= CALLER_MIN_LOGPROB
            and len(words) >= CALLER_MIN_WORDS
            and CALLER_MIN_S <= duration
        )
        if not clean:
            return False
        pcm = np.asarray(audio, dtype=np.int16)[: int(CALLER_MAX_S * INPUT_RATE)]
        if float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2))) < CALLER_MIN_RMS:
            return False
        self._caller = VoiceReference(pcm, INPUT_RATE, heard.text.strip(), name="caller")
        log.info("call %s: the caller's voice taken (%.1f s)", self._call_id, duration)
        return True

    def close(self) -> None:
        for task in self._profiles.values():
            task.cancel()

    async def reference(self, voice: str | None) -> VoiceReference | None:
        """The reference to speak `voice` with; None: the engine's default voice."""
        if voice == CALLER_VOICE:
            return self._caller
        task = self._profiles.get(voice or "")
        if task is None:
            return None
        try:
            return await asyncio.shield(task)
        except Exception:
            return None  # reported when it failed; the session went back to its voice

    async def _resolve(self, voice: str) -> VoiceReference | None:
        assert self._resolver is not None
        reference = await self._resolver.resolve(self._tenant, voice)
        if reference is None:
            raise VoiceError("voice_not_found", f"No voice profile {voice!r}")
        return reference

    def _rejected(
        self, voice: str, previous: str, task: asyncio.Task[VoiceReference | None]
    ) -> None:
        if task.cancelled() or task.exception() is None:
            return
        error = task.exception()
        self._profiles.pop(voice, None)
        if not isinstance(error, VoiceError):
            log.error("call %s: voice %s lookup failed", self._call_id, voice, exc_info=error)
            error = VoiceError("voice_unavailable", f"The voice {voice!r} could not be loaded")
        self._on_rejected(previous, error)


class _VoicedTTS:
    """A cloning engine as one call sees it: its text spoken in the call's voice."""

    def __init__(self, voice: CallVoice) -> None:
        self._voice = voice
        self._engine = voice._engine
        self.name = self._engine.name
        self.clause_batch_chars = getattr(self._engine, "clause_batch_chars", 0)

    @property
    def sample_rate(self) -> int:
        return self._engine.sample_rate

    async def load(self) -> None:
        await self._engine.load()

    async def synthesize(
        self, text: str, voice: str | None = None, speed: float = 1.0
    ) -> AsyncIterator[np.ndarray]:
        reference = await self._voice.reference(voice)
        stream = self._engine.synthesize(  # type: ignore[call-arg]
            text, voice, speed, reference=reference, call_key=self._voice._call_id
        )
        async with aclosing(stream) as chunks:
            async for chunk in chunks:
                yield chunk

    async def synthesize_words(
        self, text: str, voice: str | None = None, speed: float = 1.0
    ) -> AsyncIterator[TimedAudio]:
        """The engine's chunks with their word ends, where it gives them."""
        words = getattr(self._engine, "synthesize_words", None)
        if words is None:
            async with aclosing(self.synthesize(text, voice, speed)) as plain:
                async for pcm in plain:
                    yield TimedAudio(pcm)
            return
        reference = await self._voice.reference(voice)
        stream = words(text, voice, speed, reference=reference, call_key=self._voice._call_id)
        async with aclosing(stream) as chunks:
            async for chunk in chunks:
                yield chunk
