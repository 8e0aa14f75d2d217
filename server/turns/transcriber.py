"""Preemptive transcription: start Whisper when the speaker pauses, not when the turn ends.

Whisper costs about the same whatever the length, so the transcript of "audio up to the
pause" is the transcript of the whole turn if the user stays quiet: the audio after a
pause is only silence. The job started at the pause is handed over when the turn ends;
if the user speaks again, the job is dropped (one already running on the STT worker runs
to its end, which is the price of guessing; one still queued never runs) and the next
pause starts a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import numpy as np

from media.levels import mean_power
from media.vad import SAMPLE_RATE
from server.engines.base import SpeechToText, Transcript

log = logging.getLogger("hark.turns")

# Digital silence after the audio of a pause: Whisper hears a question's last word
# better with room after it ("the capital of friends?" with the ~130 ms of a 32 ms pause,
# "of France?" with 128 ms or more added). It is free: a short utterance is encoded in
# a fixed window (faster_whisper_stt.SHORT_WINDOW_S). More room makes Whisper finish a
# sentence cut at a pause more often ("… call my mother."), so no more than that.
PAUSE_TAIL_S = 0.128
# A pause is one 32 ms frame under Silero's threshold, which a word's unvoiced end can
# dip to with the word's /s/ still to come (one way to cut a last word; the "capital of
# friends?" of full test runs was another: Whisper's greedy pass, with the word whole
# and nothing after it, now off by default). So the turn reuses the
# pause's transcript only if the first `AFTER_PAUSE_S` after the pause were no louder
# than the turn's trailing silence by `SOUND_AFTER_DB`; otherwise the whole turn is
# transcribed (~130 ms more; offline on 20 Piper questions it fired for 1 clean, 0 at
# 30 and 20 dB SNR).
AFTER_PAUSE_S = 0.16
SOUND_AFTER_DB = 10.0


def _consume(task: asyncio.Task[Transcript]) -> None:
    """Retrieve a dropped job's outcome so asyncio does not warn about it."""
    if not task.cancelled():
        with contextlib.suppress(Exception):
            task.exception()


class TurnTranscriber:
    def __init__(self, stt: SpeechToText) -> None:
        self._stt = stt
        self._job: asyncio.Task[Transcript] | None = None
        self._job_samples = 0

    @property
    def pending(self) -> asyncio.Task[Transcript] | None:
        return self._job

    def start(self, audio: np.ndarray) -> asyncio.Task[Transcript]:
        """Transcribe the turn so far (called at a pause)."""
        self.discard()
        tail = np.zeros(int(PAUSE_TAIL_S * SAMPLE_RATE), dtype=audio.dtype)
        padded = np.concatenate([audio, tail])
        self._job = asyncio.create_task(
            self._stt.transcribe_detailed(padded), name="stt-preemptive"
        )
        self._job.add_done_callback(_consume)
        self._job_samples = len(audio)
        return self._job

    def peek(self, audio: np.ndarray) -> asyncio.Task[Transcript]:
        """Transcribe `audio` on the side, leaving the turn's own job alone."""
        job = asyncio.create_task(self._stt.transcribe_detailed(audio), name="stt-peek")
        job.add_done_callback(_consume)
        return job

    def discard(self) -> None:
        """The speaker went on: the job no longer covers the turn. One still queued behind
        the STT worker's current job is cancelled before it runs, so pauses that come
        and go never pile up work ahead of the pause that ends the turn."""
        if self._job is not None and not self._job.done():
            self._job.cancel()
        self._job = None
        self._job_samples = 0

    def final(
        self, audio: np.ndarray, *, reuse: bool = True
    ) -> tuple[asyncio.Task[Transcript], bool]:
        """The transcript of the finished turn `audio`, and whether it was made early.

        The early job is reused when it covers everything but the trailing silence and
        has not failed; otherwise (or with `reuse=False`: the "silence" may hold words
        the echo gate hid) the whole turn is transcribed now.
        """
        job, covered = self._job, self._job_samples
        self._job, self._job_samples = None, 0
        usable = reuse and job is not None and covered <= len(audio)
        if usable and _sound_after(audio, covered):
            log.debug("sound went on after the pause: transcribing the whole turn")
            usable = False
        if usable and job is not None and job.done() and (job.cancelled() or job.exception()):
            log.warning("preemptive transcription failed; transcribing the turn again")
            usable = False
        if usable and job is not None:
            return job, True
        if job is not None and not job.done():
            job.cancel()  # superseded by the whole turn's own job
        task = asyncio.create_task(self._stt.transcribe_detailed(audio), name="stt-turn")
        return task, False


def _sound_after(audio: np.ndarray, covered: int) -> bool:
    """The audio just after the pause (sample `covered`) is louder than the silence that
    ended the turn (the rest): the speaker's last sound went on past the pause."""
    end = covered + int(AFTER_PAUSE_S * SAMPLE_RATE)
    after, rest = audio[covered:end], audio[end:]
    if not after.size or not rest.size:
        return False
    return mean_power(after) > (mean_power(rest) + 1.0) * 10 ** (SOUND_AFTER_DB / 10)
