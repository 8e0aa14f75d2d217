"""Does this client send the bot's voice back? Decided per call, from what was sent.

A browser cancels its own echo; smart glasses do not. Hark cannot ask, and the wrong
guess costs either way: gating a client that has no echo makes its user's barge-in
wait for a verdict, not gating one that echoes makes the bot interrupt itself. So the
call starts `UNKNOWN` (the guard's verdicts apply, at no cost while the bot is silent)
and settles as soon as the audio says which:

- `ECHO`: the waveforms found the echo (`WaveformDelay`: a sharp GCC-PHAT peak that two
  searches agree on and that each loud frame correlates at). Over WebRTC that takes
  64-150 ms of echo, before the segmenter's 64 ms onset has let anything through,
  because the guard holds back everything no louder than the worst-case echo meanwhile.
- `NONE`: the microphone stayed quiet while the reply was loud at every possible delay.
  Each frame whose microphone is at least `quiet_db` under the reference at a lag
  clears that lag once; a lag cleared `clear_frames` times cannot hold an echo (one
  would be at most `quiet_db` under its reference: glasses echo at -6 to -12 dB). A
  client with an echo never clears its own delay: there the microphone is never that
  far under what was sent. The lag of a real echo wanders (100-300 ms under load), so a
  frame as loud as an echo from a lag could be (within `echo_db` of its reference)
  undoes the clearing of every lag within `wander_seconds` of it; a person talking
  does too, which only delays the verdict.
  Through the simulated room (tests/echo_path.py) every lag of the guard's 1.5 s range
  was cleared 2.1-2.3 s into a first reply.
- `NONE` also when `voice_frames` voiced frames (~320 ms) were held back while no
  waveform search of the hold came near an echo's peak (`max_peak_ratio`, the search's
  own bar; in the simulated room a real echo peaks above it within ~100-150 ms): the user
  talked over the first reply of a client with echo cancellation before the quiet lags
  could settle it, and is heard ~320 ms late, from the onset (the held frames are
  replayed). Limit: over real WebRTC, even on a quiet server, a real echo is often
  not found in time: with `echo_guard: "on"` the search found it 2.9-4.1 s into the
  calls' audio, while in `auto` calls this rule fired on the echo itself (the VAD
  takes it for a voice too) 4.1-5.2 s in, before any search found it, and ruled it
  out; such an echo looks like a voice with no echo in it, and gets through. The quiet
  rule holds only while no search of the call peaked that high, and while the
  microphone was loud in at most a fifth of the frames the bot could echo in (a real
  echo keeps it loud, wherever its lag has gone: on a fresh server's first call the
  lags once cleared a real echo).

Faster than the voice rule, the listener asks `OnsetCheck` (media/echo/onset.py) from
a held voice's 3rd voiced frame whether echo at any delay could sound like it, using
the clearing counts from before the voice began (`cleared_before`); a "no" replays the
voice but settles nothing here: an echo longer than the reply so far may still come.

`NONE` is not final: an echo found later (a client switched to its loudspeaker) makes
it `ECHO`. `ECHO` is final for the call.
"""

from __future__ import annotations

from collections import deque
from enum import Enum

import numpy as np

from media.echo.reference import BLOCK, RATE, History

FRAME_BLOCKS = 512 // BLOCK
LOUD_REFERENCE = 30000.0  # a frame of reference louder than this (~ -30 dBFS) can echo
NOISE_POWER = 3000.0  # ~ -55 dBFS: a microphone this quiet holds no echo worth the name
LOUD_MIC_POWER = 30000.0  # ~ -45 dBFS: a microphone this loud holds a sound
HISTORY_FRAMES = 16  # frames back a held voice's onset is looked up (~0.5 s)


def frame_powers(power: History, last_block: int, lo: int, hi: int) -> np.ndarray:
    """The reference's 32 ms mean power (`power`: its power per block) ending at block
    `last_block - lag`, for lag = lo..hi (in blocks)."""
    blocks = power.get(last_block - FRAME_BLOCKS + 1 - hi, last_block - lo + 1)
    return np.convolve(blocks, np.full(FRAME_BLOCKS, 1 / FRAME_BLOCKS), "valid")[::-1]


class Presence(Enum):
    UNKNOWN = "unknown"
    ECHO = "echo"
    NONE = "none"


class EchoPresence:
    """`hear` once per microphone frame while the guard runs; `echo_found` from the
    waveform search; `voice_held` for each frame held back as echo with a voice in it,
    `release` when the hold ends."""

    def __init__(
        self,
        max_delay_seconds: float = 1.5,
        min_delay_seconds: float = 0.03,
        quiet_db: float = 25.0,
        clear_frames: int = 16,
        echo_db: float = 15.0,
        wander_seconds: float = 0.5,
        voice_frames: int = 10,
        max_peak_ratio: float = 15.0,
    ) -> None:
        self.state = Presence.UNKNOWN
        self._lo = round(min_delay_seconds * RATE / BLOCK)
        self._hi = round(max_delay_seconds * RATE / BLOCK)
        self._quiet = 10 ** (-quiet_db / 10)
        self._clear_frames = clear_frames
        self._echoing = 10 ** (-echo_db / 10)
        self._wander = round(wander_seconds * RATE / BLOCK)
        self.reason = ""  # what settled it: "waveform", "quiet" or "voice"
        self._cleared = np.zeros(self._hi - self._lo + 1, np.int32)
        self._voice_frames = voice_frames
        self._voice = 0
        self._peak = 0.0
        self._max_peak = max_peak_ratio
        self._call_peak = 0.0  # the highest waveform peak seen while unknown
        self._frames = 0  # frames with something sent that could echo, while unknown
        self._loud_mic = 0  # ... with a loud microphone
        # The clearing counts before each of the last frames, newest last: what the
        # microphone had shown before a voice that began in one of them.
        self._before: deque[np.ndarray] = deque(maxlen=HISTORY_FRAMES)

    @property
    def lags(self) -> tuple[int, int]:
        """The lags searched, in 4 ms blocks (inclusive)."""
        return self._lo, self._hi

    def cleared_before(self, frames: int) -> np.ndarray | None:
        """The clearing count per lag before the frame `frames` frames back (1: the
        newest), or None if that is further back than kept."""
        if not 0 < frames <= len(self._before):
            return None
        return self._before[-frames]

    @property
    def gating(self) -> bool:
        """The guard's verdicts apply: echo found, or not yet ruled out."""
        return self.state is not Presence.NONE

    def echo_found(self) -> None:
        self.reason = "waveform"
        self.state = Presence.ECHO

    def hear(
        self, mic_power: float, reference: History, last_block: int, peak_ratio: float = 0.0
    ) -> None:
        """One microphone frame (its mean power) ending at reference block `last_block`;
        `peak_ratio`: the waveform search's last peak over the spread of its lags."""
        if self.state is not Presence.UNKNOWN:
            return
        self._before.append(self._cleared.copy())
        self._call_peak = max(self._call_peak, peak_ratio)
        frames = frame_powers(reference, last_block, self._lo, self._hi)
        loud = frames >= LOUD_REFERENCE
        if not loud.any():
            return
        # A client whose microphone is mostly loud while the bot talks is not one with
        # no echo, whatever the lags say (they cannot be trusted when the reference and
        # the microphone fall out of step, as on a stalled server's first call).
        self._frames += 1
        self._loud_mic += mic_power > LOUD_MIC_POWER
        self._cleared += loud & (mic_power <= frames * self._quiet)
        # A microphone that could hold an echo from a lag undoes what that lag had
        # cleared: an echo whose lag wanders (under load) is found at each lag it visits.
        echoing = loud & (mic_power >= np.maximum(frames * self._echoing, NOISE_POWER))
        if echoing.any():
            near = np.convolve(echoing, np.ones(2 * self._wander + 1), "same") > 0
            self._cleared[near] = 0
        # Only where the waveforms never came near an echo: a client's echo that slips
        # out of reach of the quiet rule (a stalled server) still shows its peak.
        quiet = self._call_peak < self._max_peak and self._loud_mic <= self._frames * 0.2
        if quiet and int(self._cleared.min()) >= self._clear_frames:
            self.reason = "quiet"
            self.state = Presence.NONE

    def voice_held(self, peak_ratio: float) -> bool:
        """One more frame with a voice in it was held back while the echo is unknown
        (since `release`);
        `peak_ratio` is the waveform search's last peak over the spread of its lags.
        True once enough were held and no search came near finding an echo in them (an
        echo peaks at 15-100 within ~150 ms, a voice with none stays under ~11): the
        state is then `NONE`."""
        if self.state is not Presence.UNKNOWN:
            return False
        self._voice += 1
        self._peak = max(self._peak, peak_ratio)
        if self._voice >= self._voice_frames and self._peak < self._max_peak:
            self.reason = "voice"
            self.state = Presence.NONE
            return True
        return False

    @property
    def hold_peak(self) -> float:
        """The highest waveform peak seen in the current hold."""
        return self._peak

    def release(self) -> None:
        """What was held back went on (or the bot fell silent): count afresh."""
        self._voice = 0
        self._peak = 0.0
