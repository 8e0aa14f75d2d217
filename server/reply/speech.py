"""Speaking a reply: its clauses, as the LLM completes them, through TTS onto the track.

Each clause is synthesized as soon as it is complete and its audio handed on while the
LLM is still writing, so the first audio goes out after one clause, not one reply.
`first_audio` is set once the first clause has audio (or none to give): until then the
writer does not read the LLM on, so an in-process LLM leaves the CPU to the first TTS.
Each chunk's word ends (where the engine knows them: `server.engines.word_timing`) follow
its audio into `HeardText`, through the silence trimmed here, for heard-only text.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence

import numpy as np

from server.engines.base import TextToSpeech
from server.engines.deadlines import audio_in_hand
from server.engines.faults import as_fault
from server.engines.word_timing import TimedAudio, WordEnd, timed_audio
from server.reply.heard_text import HeardText
from server.turns.timings import TurnTimings

Play = Callable[[np.ndarray, int], None]

SILENCE_LEVEL = 200  # int16 amplitude below which TTS output counts as silence
LEAD_IN_KEEP_S = 0.01
MID_SENTENCE_TAIL_S = 0.04


class ClauseSpeaker:
    def __init__(
        self,
        tts: TextToSpeech,
        *,
        voice: str,
        speed: float,
        heard: HeardText,
        timings: TurnTimings,
        play: Play,
        audio_ahead: Callable[[], float] = lambda: 0.0,
    ) -> None:
        """`audio_ahead`: seconds of this reply's audio given to `play` and not yet heard."""
        self._tts = tts
        self._voice = voice
        self._speed = speed
        self._heard = heard
        self._timings = timings
        self._play = play
        self._audio_ahead = audio_ahead
        self.first_audio = asyncio.Event()

    async def speak(self, clauses: asyncio.Queue[str | None]) -> None:
        """Speak each clause from the queue until `None`."""
        rate = self._tts.sample_rate
        first = True
        batch = ClauseBatcher(clauses, getattr(self._tts, "clause_batch_chars", 0))
        try:
            while (parts := await batch.next()) is not None:
                self._timings.mark("first_clause")
                spans = [self._heard.locate(part) for part in parts]
                span = (spans[0][0], spans[-1][1])
                # The engine's job for the clause is asked inside; this task asks no other.
                with audio_in_hand(self._audio_ahead()):
                    async for chunk in self._clause_audio(" ".join(parts)):
                        pcm, lead = chunk.pcm, 0
                        if first:
                            pcm = trim_leading_silence(pcm, rate)
                            lead = len(chunk.pcm) - len(pcm)
                            first = len(pcm) == 0
                        if len(pcm) == 0:
                            continue
                        self._timings.mark("tts_first_audio")
                        self.first_audio.set()
                        self._play(pcm, rate)
                        words = chunk.shifted(lead, len(pcm))
                        self._heard.add_audio(span, len(pcm) * 1000 / rate, _word_ends(words, rate))
                self.first_audio.set()
        except Exception as exc:
            raise as_fault(exc, "tts") from exc
        finally:
            self.first_audio.set()

    async def _clause_audio(self, clause: str) -> AsyncIterator[TimedAudio]:
        """The clause's audio; a chunk cut mid-sentence (before "of France.") loses most
        of the silence TTS leaves after a finished utterance, so the sentence flows on."""
        mid_sentence = clause[-1:].isalnum()
        held: TimedAudio | None = None
        audio = timed_audio(self._tts, clause, self._voice, self._speed)
        async with contextlib.aclosing(audio) as chunks:
            async for chunk in chunks:
                if not mid_sentence:
                    yield chunk
                    continue
                if held is not None:
                    yield held
                held = chunk
        if held is not None:
            pcm = trim_trailing_silence(held.pcm, self._tts.sample_rate)
            yield TimedAudio(pcm, held.shifted(0, len(pcm)))


class ClauseBatcher:
    """The clauses to synthesize next: the reply's first alone (first audio sooner), then
    whatever has piled up meanwhile, joined up to `max_chars`, for engines that speak a
    longer text better and at less cost per word (F5-TTS: `clause_batch_chars`)."""

    def __init__(self, clauses: asyncio.Queue[str | None], max_chars: int) -> None:
        self._clauses = clauses
        self._max_chars = max_chars
        self._carry: list[str | None] = []
        self._first = True

    async def next(self) -> list[str] | None:
        clause = self._carry.pop() if self._carry else await self._clauses.get()
        if clause is None:
            return None
        parts = [clause]
        if self._max_chars and not self._first:
            while not self._clauses.empty():
                more = self._clauses.get_nowait()
                if more is None or len(" ".join(parts)) + 1 + len(more) > self._max_chars:
                    self._carry.append(more)
                    break
                parts.append(more)
        self._first = False
        return parts


def _word_ends(words: Sequence[WordEnd] | None, rate: int) -> list[tuple[int, float]] | None:
    return None if words is None else [(w.word, w.sample * 1000 / rate) for w in words]


def _loud_samples(pcm: np.ndarray) -> np.ndarray:
    return np.flatnonzero(np.abs(pcm.astype(np.int32)) > SILENCE_LEVEL)


def trim_trailing_silence(pcm: np.ndarray, rate: int) -> np.ndarray:
    """Keep 40 ms of the quiet after the last sound: a phrase, not a sentence, ended."""
    loud = _loud_samples(pcm)
    if len(loud) == 0:
        return pcm
    return pcm[: int(loud[-1]) + 1 + int(MID_SENTENCE_TAIL_S * rate)]


def trim_leading_silence(pcm: np.ndarray, rate: int) -> np.ndarray:
    """Drop the quiet lead-in TTS puts before a reply's first word (~40 ms for Piper):
    it only delays the moment the user hears the answer. Keeps 10 ms before the voice."""
    loud = _loud_samples(pcm)
    if len(loud) == 0:
        return pcm[:0]
    return pcm[max(0, int(loud[0]) - int(LEAD_IN_KEEP_S * rate)) :]
