"""A voice held back while the echo is unknown, asked early whether it could be echo
(`OnsetCheck` through `EchoListener` at `auto`), on the simulated client
(tests/echo_path.py: real Piper replies and voices, real Silero)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from media.echo.presence import Presence
from media.vad import SileroModel, SileroVad
from server.turns.echo_listening import EchoListener
from tests.echo_path import echo_cases, run_case

pytestmark = pytest.mark.slow


class Listening:
    """`run_case`'s guard seen through an `EchoListener`, noting each onset check and
    each replay (with the presence at that moment)."""

    def __init__(self) -> None:
        self.listener = EchoListener("auto")
        self.guard = self.listener.guard
        self.vad = SileroVad(SileroModel.load())
        self.delay_ms = None
        self.checks: list[tuple[int, int, bool]] = []  # (mic clock ms, frames, could be echo)
        self.replays: list[tuple[int, Presence]] = []
        self._now_ms = 0
        check = self.guard.voice_could_be_echo

        def noted(voiced):  # type: ignore[no-untyped-def]
            answer = check(voiced)
            self.checks.append((self._now_ms, len(voiced), answer))
            return answer

        self.guard.voice_could_be_echo = noted  # type: ignore[method-assign]

    def far_end(self, frame, sent_at):  # type: ignore[no-untyped-def]
        self.guard.far_end(frame, sent_at)

    def near_end(self, frame, audio_end_ms, now=None):  # type: ignore[no-untyped-def]
        self._now_ms = audio_end_ms
        heard = self.listener.hear(frame, audio_end_ms, self.vad, 0.5, in_turn=False, now=now)
        if heard.replay:
            self.replays.append((audio_end_ms, self.guard.presence.state))
        return type("Verdict", (), {"frame": heard.frame, "echo_only": heard.probability == 0})


@pytest.mark.parametrize("room", [False, True])
def test_the_echo_of_a_first_reply_is_never_taken_for_a_voice(room):
    """The echo's onset looks like a voice's (the microphone was quiet until the reply
    reached it): every check says it could be echo, and nothing is replayed."""
    checked = 0
    for case in echo_cases(6, user=False, seed=9):
        shim = Listening()
        run_case(replace(case, room=room), shim)
        assert all(could for _, _, could in shim.checks), (case, shim.checks)
        assert shim.replays == [], case
        assert shim.guard.presence.state is Presence.ECHO, case
        checked += len(shim.checks)
    assert checked, "no echo onset was ever held and checked: nothing was tested"


def test_a_voice_over_a_first_reply_without_echo_is_heard_within_a_few_frames():
    """A client with no echo, its user talking 0.3-1 s into the first reply at -8..+3 dB
    of the bot's level: the voice is replayed by the onset check (within its frames,
    before the ~320 ms voice rule could settle anything), and the echo stays unknown."""
    rng = np.random.default_rng(4)
    early = 0
    cases = echo_cases(6, user=True, seed=4)
    for case in cases:
        case = replace(
            case, user_at=float(rng.uniform(0.3, 1.0)), user_gain_db=float(rng.uniform(-8, 3))
        )
        shim = Listening()
        result = run_case(case, shim, with_echo=False)
        assert result.user_onset_ms is not None
        replays = [(t, s) for t, s in shim.replays if t >= result.user_onset_ms - 100]
        assert replays, (case, shim.checks)
        at, state = replays[0]
        released = any(t == at and not could for t, _, could in shim.checks)
        early += released
        if released:
            assert state is Presence.UNKNOWN  # the call's echo is not ruled out by it
    assert early >= len(cases) - 1  # (one may fall to the slower rules)
