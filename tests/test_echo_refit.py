"""The turn's audio for the transcript, with the bot's echo fitted out after the fact.

`EchoRefit`'s bookkeeping with a fake fit named as one (which frames are fitted, when,
and where they land in a turn's audio), then the real listener (EchoGuard, AEC3, Silero,
the segmenter) on a simulated client that returns a bare echo: soft questions over a
first reply, whose turns the gate's audio gets wrong and the refitted audio right.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pytest

from media.echo.held import HeldAudio
from media.echo.refit import CHUNK_FRAMES, KEPT_FRAMES, SILENCE_FIT_FRAMES, EchoRefit
from server.engines.faster_whisper_stt import FasterWhisperSTT
from server.turns.own_words import words
from tests.echo_path import ListeningClient, echo_cases, run_case


class FakeFit:
    """Stands in for `EchoGuard.explain_held`: each frame "less the echo" is the frame
    negated; `gone` end times have no reference left. Records what it was asked."""

    def __init__(self, gone: Sequence[int] = ()) -> None:
        self.asked: list[list[int]] = []
        self.gone = set(gone)

    def __call__(self, frames: Sequence[tuple[np.ndarray, int]]) -> HeldAudio:
        ends = [end for _, end in frames]
        self.asked.append(ends)
        left = [None if end in self.gone else 1.0 for end in ends]
        return HeldAudio(left, [-frame for frame, _ in frames], [0] * len(frames))


def frame(value: int) -> np.ndarray:
    return np.full(512, value, np.int16)


def test_refitted_frames_take_the_gates_place_by_their_audio_clock():
    fit = FakeFit(gone=[64])
    refit = EchoRefit(fit)
    due = [refit.add(frame(k), 32 * k, echo_window=True) for k in range(1, CHUNK_FRAMES + 1)]
    assert due == [False] * (CHUNK_FRAMES - 1) + [True]  # a chunk at a time
    refit.fit()
    assert fit.asked == [[32 * k for k in range(1, CHUNK_FRAMES + 1)]]
    # A turn from frame 3 to frame 20, with half a frame before it: frames 3-16 were
    # fitted, 17-20 came after; frame 2 (ending at 64 ms) had no reference left.
    turn = np.concatenate([np.full(256, 99, np.int16), *(frame(k) for k in range(2, 21))])
    out = refit.apply(turn, 20 * 32)
    assert out is not turn and len(out) == len(turn)
    assert np.all(out[:256] == 99)
    got = out[256:].reshape(-1, 512)[:, 0].tolist()
    assert got == [2, *(-k for k in range(3, CHUNK_FRAMES + 1)), 17, 18, 19, 20]
    assert np.all(turn[256:].reshape(-1, 512)[:, 0] > 0)  # the gate's audio is left alone
    untouched = np.concatenate([frame(k) for k in range(30, 34)])
    assert refit.apply(untouched, 33 * 32) is untouched  # none refitted: as it was


def test_a_short_run_is_fitted_with_the_frames_before_it_and_never_alone():
    fit = FakeFit()
    refit = EchoRefit(fit)
    for k in range(1, CHUNK_FRAMES + 1):
        refit.add(frame(k), 32 * k, echo_window=True)
    refit.fit()
    for k in range(17, 20):  # three more before a pause
        refit.add(frame(k), 32 * k, echo_window=True)
    refit.fit()
    assert fit.asked[-1] == [32 * k for k in range(4, 20)]  # a whole chunk's worth
    out = refit.apply(np.concatenate([frame(k) for k in range(15, 20)]), 19 * 32)
    assert out.reshape(-1, 512)[:, 0].tolist() == [-15, -16, -17, -18, -19]
    # A run of three elsewhere (not after those): a fit to three frames would explain a
    # voice away with the echo, so they are left as the gate saw them.
    assert refit.add(frame(1), 5000, echo_window=False) is False  # nothing pending
    for k in range(3):
        refit.add(frame(50 + k), 6000 + 32 * k, echo_window=True)
    assert refit.add(frame(1), 6096, echo_window=False) is True  # the run ended: due
    asked = len(fit.asked)
    refit.fit()
    assert len(fit.asked) == asked
    assert refit.apply(frame(52), 6064)[0] == 52


def test_in_a_turns_silence_the_frames_so_far_are_due():
    refit = EchoRefit(FakeFit())
    schedule = []
    for k in range(1, 15):
        refit.add(frame(k), 32 * k, echo_window=True)
        voiced = k <= 5
        schedule.append(refit.due_in_silence(voiced, in_turn=True))
        if schedule[-1]:
            refit.fit()
    # The first unvoiced frame after a voice (a pause may come on it), then every
    # SILENCE_FIT_FRAMES of the silence (the turn may end on any of them).
    first = 5
    expected = [
        k == first or (k > first and (k - first) % SILENCE_FIT_FRAMES == 0) for k in range(14)
    ]
    assert schedule == expected
    refit.add(frame(20), 32 * 20, echo_window=True)
    assert not refit.due_in_silence(False, in_turn=False)  # no turn: the chunk will do


def test_only_the_newest_frames_are_kept():
    refit = EchoRefit(FakeFit())
    n = (KEPT_FRAMES // CHUNK_FRAMES + 2) * CHUNK_FRAMES  # whole chunks, all fitted
    for k in range(1, n + 1):
        if refit.add(frame(k % 1000), 32 * k, echo_window=True):
            refit.fit()
    assert refit.apply(frame(1), 32)[0] == 1  # the oldest are forgotten
    assert refit.apply(frame(n % 1000), 32 * n)[0] == -(n % 1000)


# ---- the real listener --------------------------------------------------------------


def voice_error_db(audio: np.ndarray, voice: np.ndarray) -> float:
    """How far `audio` is from the voice alone over the frames that hold the voice."""
    n = len(audio) // 512 * 512
    a = audio[-n:].astype(np.float64).reshape(-1, 512)
    v = voice[-n:].reshape(-1, 512)
    loud = np.mean(v**2, axis=1) > 10**4.5
    return float(10 * np.log10(np.sum((a - v)[loud] ** 2) / np.sum(v[loud] ** 2)))


@pytest.fixture(scope="module")
def whisper() -> FasterWhisperSTT:
    stt = FasterWhisperSTT(beam_size=5, cpu_threads=2)
    asyncio.run(stt.load())
    return stt


@pytest.mark.parametrize(("index", "at"), [(3, 1.0), (7, 0.6)])
def test_a_soft_question_over_a_first_replys_echo_is_heard_refitted(index, at, whisper):
    """'Actually, cancel that please.' 10 dB under the user's level, 0.6-1 s into a call's
    first reply (a bare echo, as the e2e client's): the gate's turn holds the echo in
    the voice's frames, or a voice AEC3 carved ("Actually, can you go back, please?");
    the refitted turn is the voice, and Whisper hears "cancel" in it."""
    case = echo_cases(8, user=True, seed=21)[index]
    asked = replace(case, room=False, user_gain_db=-10.0, user_at=at)
    client = ListeningClient()
    result = run_case(asked, client, tail_seconds=3.0)  # type: ignore[arg-type]
    assert len(client.turns) == 1, "one turn: the question"
    gate, refitted, end_ms = client.turns[0], client.refitted[0], client.ended_ms[0]
    voice = result.user[end_ms * 16 - len(gate) : end_ms * 16]
    assert voice_error_db(gate, voice) > -6.0  # the case is one the gate gets wrong
    assert voice_error_db(refitted, voice) < -8.0
    heard = asyncio.run(whisper.transcribe_detailed(refitted)).text
    assert "cancel" in words(heard), heard


def test_a_client_that_returns_no_echo_keeps_its_voice_as_it_came():
    """No echo at all, a voice 0.4 s into a call's first reply (the echo still unknown):
    nothing is refitted. (Fitted to a reply the client never played back, the voice
    lost words: an "Uh-huh." over a first reply was heard as "Right now." and taken for
    an interruption.)"""
    case = echo_cases(8, user=True, seed=21)[1]
    asked = replace(case, room=False, user_gain_db=0.0, user_at=0.4)
    client = ListeningClient()
    run_case(asked, client, tail_seconds=3.0, with_echo=False)  # type: ignore[arg-type]
    assert client.turns, "the voice made a turn"
    assert all(r is t for r, t in zip(client.refitted, client.turns, strict=True))
