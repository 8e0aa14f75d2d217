"""The caller's words with the bot's echo taken out after the fact, for the transcript.

The gate and the VAD must judge each frame as it comes, so a turn's audio is what they
were handed: AEC3's output where the gate heard only echo (its residual suppressor
carves a voice that talks over the echo out with it) and the microphone as it came, echo
and all, where it heard a person. Whisper then hears the bot's words in the turn, or a
voice with holes: "What time is it?" 10 dB under a first reply's echo came out as "See
that one." in a full test run; offline, Whisper heard 30-62 % of a soft question's words
from the raw microphone over its span, and all of them from the voice alone.

The transcript is in no such hurry: it is made at a pause, when the frames around each
one have come too. `EchoRefit` fits what was sent to the microphone ~0.5 s at a time
(media.echo.held: one least-squares gain per frequency at the delay that explains the
echo best; the frames after a frame help fit it) and keeps each frame less that echo,
which leaves a voice over it whole. A turn's audio is handed to Whisper with the frames
refitted so far in place of the ones the gate saw.

Offline (`python -m tests.bench.soft_questions --cases 8 --transcripts [--warm]`: the
whole listener on the simulated client, questions 14 / 10 / 6 dB under the bot 0.3-2 s
into a reply, Whisper tiny.en), the share of a question's words in the transcript of its
turns, as the gate handed them -> refitted: in a call's first reply over a bare echo
0.56 / 0.53 / 0.70 -> 0.65 / 0.67 / 0.75, over a room's 0.15 / 0.19 / 0.25 -> 0.22 / 0.28
/ 0.47; with an earlier reply's echo known, bare 0.61 / 0.80 / 0.89 -> 0.62 / 0.83 / 0.84,
room 0.14 / 0.20 / 0.39 -> 0.22 / 0.22 / 0.48. (A converged AEC3 keeps a loud voice a
little better; the fit takes ~1/16 of a voice with the echo, its error about -12 dB.
Refitting without the frames it explains least did no better.) Cost: ~8 ms of
numpy per 0.5 s of microphone audio (~1.6 % of a core) on a worker thread, while
something sent could be echoing in it and the call's echo is known. (While it is still
unknown nothing is refitted: a client that returns none had its voice fitted to a reply
it never played, and an "Uh-huh." was heard as "Right now.")
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Sequence

import numpy as np

from media.echo.held import HeldAudio
from media.echo.model import FRAME

log = logging.getLogger("hark.echo")

FRAME_MS = FRAME * 1000 // 16000
CHUNK_FRAMES = 16  # frames fitted at a time: ~0.5 s, as a held voice's are judged
SILENCE_FIT_FRAMES = 4  # frames fitted at a time in a turn's silence: its end may follow
MIN_FIT_FRAMES = 8  # fewer consecutive frames are left as the gate saw them: a fit to
# a frame or two explains anything, a voice included
KEPT_FRAMES = 940  # refitted frames kept: ~30 s, the longest turn


class EchoRefit:
    """One call's microphone, refitted against what was sent. `add` every frame the
    listener gates (True: a chunk is due, for a worker thread: `fit`), ask
    `due_in_silence` of every frame the segmenter gets; `apply` a turn's audio before it
    is transcribed."""

    def __init__(self, explain: Callable[[Sequence[tuple[np.ndarray, int]]], HeldAudio]) -> None:
        self._explain = explain  # EchoGuard.explain_held: the reference is the guard's
        self._pending: list[tuple[np.ndarray, int]] = []
        # the last frames fitted, as context for a short run before a pause
        self._fitted: deque[tuple[np.ndarray, int]] = deque(maxlen=CHUNK_FRAMES)
        # audio_end_ms -> the frame less the echo, oldest first
        self._cleaned: dict[int, np.ndarray] = {}
        self._was_voiced = False

    def add(self, raw: np.ndarray, audio_end_ms: int, *, echo_window: bool) -> bool:
        """A microphone frame as it came; `echo_window`: something sent could be echoing
        in it. Only those are fitted, in runs of consecutive frames: True when a run has
        a whole chunk, or has ended, and is due to be fitted."""
        if not echo_window:
            return bool(self._pending)
        self._pending.append((raw, audio_end_ms))
        return len(self._pending) >= CHUNK_FRAMES

    def due_in_silence(self, voiced: bool, in_turn: bool) -> bool:
        """True at a turn's unvoiced frame with frames still to fit: its first after a
        voiced one (the segmenter may pause the turn on it, and the transcript started
        then should hear them refitted), and every `SILENCE_FIT_FRAMES` after it (the
        turn may end, and its "silence" can hold the last words the gate took for echo)."""
        pending = len(self._pending)
        due = in_turn and not voiced and (self._was_voiced or pending >= SILENCE_FIT_FRAMES)
        self._was_voiced = voiced
        return due and pending > 0

    def fit(self) -> None:
        """The frames added since the last fit, refitted at once: ~8 ms of numpy per
        chunk, a worker thread's. (The listener's frames wait for it, so `add` never runs
        meanwhile; `apply` only reads whole frames.)"""
        pending, self._pending = self._pending, []
        if not pending:
            return
        # A short run is fitted with the frames just before it in the same run.
        context: list[tuple[np.ndarray, int]] = []
        for frame in reversed(self._fitted):
            expected = (context[0] if context else pending[0])[1] - FRAME_MS
            if frame[1] != expected or len(context) + len(pending) >= CHUNK_FRAMES:
                break
            context.insert(0, frame)
        self._fitted.extend(pending)
        frames = context + pending
        if len(frames) < MIN_FIT_FRAMES:
            return
        judged = self._explain(frames)
        fresh = zip(
            pending,
            judged.left[len(context) :],
            judged.cleaned[len(context) :],
            strict=True,
        )
        for (_, end_ms), left, cleaned in fresh:
            if left is None:  # its reference is no longer kept: the gate's frame stays
                continue
            self._cleaned[end_ms] = cleaned
        while len(self._cleaned) > KEPT_FRAMES:
            del self._cleaned[next(iter(self._cleaned))]

    def apply(self, audio: np.ndarray, audio_end_ms: int) -> np.ndarray:
        """`audio` (whole frames, the last ending at `audio_end_ms`) with each frame
        refitted so far in place; the same array when none is. Frames not yet fitted (a
        turn's trailing silence) stay as the gate saw them."""
        n = len(audio) // FRAME
        offset = len(audio) - n * FRAME
        out: np.ndarray | None = None
        refitted = 0
        for i in range(n):
            cleaned = self._cleaned.get(audio_end_ms - (n - 1 - i) * FRAME_MS)
            if cleaned is None:
                continue
            if out is None:
                out = audio.copy()
            start = offset + i * FRAME
            out[start : start + FRAME] = cleaned
            refitted += 1
        if refitted:
            log.debug("turn audio to %d ms: %d of %d frames refitted", audio_end_ms, refitted, n)
        return audio if out is None else out
