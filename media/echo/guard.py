"""Echo-proof listening without the client's help: cancel the bot's own voice, flag echo.

Smart glasses and many embedded clients have no echo cancellation, so the bot hears
itself 100-300 ms after the client plays it, plus the network both ways and the client's
jitter buffer. The server knows exactly what it sent and when; this module uses that:

    guard = EchoGuard()
    track.on_frame_sent = guard.far_end                # every 20 ms 48 kHz frame sent
    verdict = guard.near_end(frame16k, audio_end_ms)   # every 32 ms microphone frame
    p = vad(verdict.frame)                             # VAD the cleaned audio
    segmenter.push(verdict.frame, 0.0 if verdict.echo_only else p, audio_end_ms)

1. `ReferenceTimeline` keeps the sent audio at 16 kHz on the server clock.
2. The microphone's audio clock is put on the same clock with one offset: the smallest
   `now - audio_end_ms` seen (the least-delayed arrival), so arrival jitter moves nothing.
3. `WaveformDelay` finds the round-trip delay to the sample from the waveforms (GCC-PHAT)
   after ~150 ms of echo, again at each burst of echo until it confirms the delay in use;
   `EchoDelayEstimator` (envelopes, ~0.6 s) tracks it from then on.
4. `EchoCanceller` (WebRTC AEC3) gets the reference shifted by that delay less a small
   lead, which its own fine delay search covers, and removes the echo; it needs ~1.3 s.
5. `AlignedEchoModel`, fitted at once to the echo heard while the delay was being found,
   predicts each frame's echo from the reference at the waveform delay: on a call's first
   reply it is what tells a voice from the echo, long before AEC3 can.
6. `EchoGate` compares what the canceller and the model leave, and the microphone itself,
   with the loudest echo the frame could hold and says whether the frame is echo only.
   The first 256 ms of each later burst of echo, and frames with nothing at the measured
   delay but something within the whole searched range, are judged against that whole
   range with no credit for cancellation: a client's jitter buffer may have moved the
   echo since the delay was measured (the model is used only once the waveforms have
   confirmed its delay in the burst). Those after the echo at a delay the waveforms
   found is over (the bot fell silent) are flagged `past_echo`: only a moved path could
   echo there, so the listener does not lose a voice on that verdict alone.

While nothing was sent within the possible echo window (the bot is silent), frames pass
through untouched and are never flagged. Everything here is synchronous numpy and one
GIL-free AEC3 call, ~0.7 ms per frame (~1.5 ms in a frame with a waveform search): it
runs inline on the event loop.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from media.echo.align import WaveformDelay
from media.echo.canceller import EchoCanceller
from media.echo.delay import BLOCK_SECONDS, EchoDelayEstimator
from media.echo.gate import ACTIVE_FRAME_POWER, EchoGate, GateParams
from media.echo.held import HeldAudio, explain
from media.echo.model import AlignedEchoModel
from media.echo.onset import OnsetCheck
from media.echo.presence import HISTORY_FRAMES, EchoPresence
from media.echo.reference import BLOCK, RATE, ReferenceTimeline

FRAME_SAMPLES = 512
FRAME_BLOCKS = FRAME_SAMPLES // BLOCK
REVERB_TAIL_SECONDS = 0.15  # echo energy still arriving after the direct path
DELAY_SLACK_SECONDS = 0.04  # error allowed in the delay estimate when bounding the echo
AEC_LEAD_SECONDS = 0.065  # the reference handed to AEC3 leads the echo by this much
RESYNC_SAMPLES = 640  # re-align the AEC reference only when it is off by more than 10 ms
ONSET_FRAMES = 8  # a burst of echo is judged against the whole window for its first 256 ms
CLOCK_JUMP_SECONDS = 0.02  # the anchor moving earlier by more than this at once: a jump
RESET_SAMPLES = 1600  # ... and restart AEC3 when the jump is over 50 ms
RELEARN_FRAMES = 64  # echo heard in the last ~2 s teaches the coupling once the delay is known
RELEARN_SHIFT_SECONDS = 0.05  # ... and again when the delay moves by more than this
SAME_DELAY_SAMPLES = 32  # a waveform delay this close (2 ms) to the model's confirms it
MODEL_USEFUL_DB = 6.0  # the model is trusted to follow slips and to clean a voice once it
# is seen to leave this much less of the echo than the raw coupling does


_DITHER = np.random.default_rng(0).integers(-1, 2, FRAME_SAMPLES).astype(np.int32)


@dataclass(frozen=True)
class EchoVerdict:
    frame: np.ndarray  # the microphone frame with the echo removed (or as given)
    echo_only: bool  # reference playing and nothing but its echo heard: no speech onset
    delay_ms: float | None  # the round-trip echo delay in use, once measured
    echo_window: bool = False  # something sent could be echoing in this frame
    suspect: bool = False  # the gate saw evidence of a person in it, not yet confirmed
    echo_left: float | None = None  # the frame's power the echo model leaves, once modelled
    # Echo only by the whole window: the reply's echo at the measured delay is over (the
    # bot fell silent), and only an echo path that moved since could still bring some.
    past_echo: bool = False


class EchoGuard:
    """One call's echo handling; `far_end` and `near_end` are called on the event loop."""

    def __init__(
        self,
        *,
        max_delay_seconds: float = 1.5,
        gate: GateParams | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_delay_seconds = max_delay_seconds
        self.clock = clock  # when a microphone frame arrived, unless `near_end` is told
        self._reference = ReferenceTimeline(keep_seconds=max_delay_seconds + 4.5)
        self._delay = EchoDelayEstimator(max_delay_seconds=max_delay_seconds)
        self._waveform = WaveformDelay(max_delay_seconds=max_delay_seconds)
        self._frames = 0
        self._model = AlignedEchoModel(self._reference.samples)
        self._checked = False  # the waveforms confirmed the model's delay in this burst
        # (end index, delay, anchor) of a delay just found, to fit the model at next frame
        self._refit: tuple[int, int, float] | None = None
        self._gate = EchoGate(gate)
        self._canceller: EchoCanceller | None = None
        # False while nothing of the canceller's output is used (a call at "auto" settled
        # echo-free): AEC3 (~0.35 ms a frame, a third of the guard's cost) is not run,
        # and a fresh one starts if the call turns out to echo after all.
        self.cancelling = True
        self._anchor = math.inf  # server time of audio clock 0, least-delayed arrival
        self._far_end_at: int | None = None  # reference index feeding AEC3 next
        self._burst = 0  # consecutive frames with reference at the measured delay
        self._jumped = False  # the audio clock jumped since the waveforms last found the echo
        # (last block, mic power) of recent echo-only frames, and the delay the coupling
        # was last learned at: a first (or moved) delay re-reads them against the new window.
        self._echo_frames: deque[tuple[int, float]] = deque(maxlen=RELEARN_FRAMES)
        self._coupling_delay: float | None = None
        # Frames (their reference end index // FRAME_SAMPLES) the listener found a person
        # in after all: not echo, so nothing is learned from them as echo.
        self._voice: deque[int] = deque(maxlen=RELEARN_FRAMES)
        self.presence = EchoPresence(max_delay_seconds)  # does this client echo at all?
        self._onset = OnsetCheck(*self.presence.lags)
        # (samples, last block, end index) of the last frames, for a held voice's check
        self._heard: deque[tuple[np.ndarray, int, int]] = deque(maxlen=HISTORY_FRAMES)

    @property
    def delay_ms(self) -> float | None:
        d = self._delay.delay_seconds
        return None if d is None else d * 1000

    @property
    def waveform_peak(self) -> float:
        """The last waveform search's peak over the spread of its lags (an echo: 15-100)."""
        return self._waveform.peak_ratio

    def voice_could_be_echo(self, voiced: Sequence[bool]) -> bool:
        """Whether a voice held back while the echo is unknown, begun `len(voiced)`
        frames back (`voiced`: each frame's VAD verdict since, oldest first), could be
        the echo of something sent (`OnsetCheck`). True when it began too far back."""
        n = len(voiced)
        cleared = self.presence.cleared_before(n)
        if cleared is None or n > len(self._heard):
            return True
        heard = list(self._heard)[-n:]
        frames = [(s, v, b, e) for (s, b, e), v in zip(heard, voiced, strict=True)]
        return self._onset.could_be_echo(self._reference, cleared, frames)

    def not_echo(self, audio_end_ms: Sequence[int]) -> None:
        """Frames held back as echo turned out to hold a person (`explain_held`): what was
        heard while the delay was being found and is about to teach the gate and the
        echo model (the echo just found in it) leaves them out. Without this a soft
        voice under the first reply taught them that echo is that loud, and they missed
        the rest of it."""
        for ms in audio_end_ms:
            self._voice.append(self._key(self._end_of(ms)))

    def _key(self, end: float) -> int:
        return round(end / FRAME_SAMPLES)

    def _end_of(self, audio_end_ms: int) -> int:
        return round(self._reference.index_at(self._anchor + audio_end_ms / 1000))

    def explain_held(self, frames: Sequence[tuple[np.ndarray, int]]) -> HeldAudio:
        """Consecutive microphone frames held back as possible echo, as (samples,
        audio_end_ms), oldest first, judged by what was sent (`media.echo.held`): what
        the best-fitting echo leaves of each, at the measured delay or where they
        correlate with the reference."""
        assert self._reference.started
        ends = [self._end_of(ms) for _, ms in frames]
        delays = [] if self._model.delay is None else [self._model.delay]
        if self._delay.delay_seconds is not None:
            delays.append(round(self._delay.delay_seconds * RATE))
        lo, hi = self.presence.lags
        samples = [frame for frame, _ in frames]
        return explain(self._reference.samples, samples, ends, delays, (lo * BLOCK, hi * BLOCK))

    @property
    def onset_check(self) -> OnsetCheck:
        return self._onset

    @property
    def model_useful(self) -> bool:
        """The echo model is seen to leave `MODEL_USEFUL_DB` less of the echo than the
        raw coupling does: what it leaves of a frame is worth a look."""
        return self._gate.model_gain_db <= self._gate.echo_gain_db - MODEL_USEFUL_DB

    @property
    def erle_db(self) -> float:
        """Echo cancellation currently achieved (median over recent echo frames)."""
        return self._gate.erle_db

    @property
    def canceller_running(self) -> bool:
        return self._canceller is not None

    def far_end(self, frame: np.ndarray, sent_at: float, sample_rate: int = 48000) -> None:
        """A frame the client was sent (1-D int16, silence included) and when it left."""
        self._reference.add(frame, sent_at, sample_rate)

    def near_end(
        self, frame: np.ndarray, audio_end_ms: int, now: float | None = None
    ) -> EchoVerdict:
        """A 512-sample 16 kHz int16 microphone frame ending at `audio_end_ms` on the
        inbound audio clock; `now` (default: the clock) is when it arrived."""
        if frame.shape != (FRAME_SAMPLES,) or frame.dtype != np.int16:
            raise ValueError(
                f"expected {FRAME_SAMPLES} int16 samples, got {frame.dtype} {frame.shape}"
            )
        if not self._reference.started:
            return EchoVerdict(frame, False, None)
        now = self.clock() if now is None else now
        anchor = min(self._anchor, now - audio_end_ms / 1000)
        if anchor < self._anchor - CLOCK_JUMP_SECONDS:
            # The audio clock ran ahead of the arrivals: a stalled server fed silence for
            # a gap whose audio came after all (tens to hundreds of ms under load). Frames
            # from before and after the splice do not line up with the reference alike,
            # so nothing measured across it holds: the model waits for the waveforms, and
            # frames are judged against the whole window until they find the echo again.
            # (Moving the model by the jump, as for a less-delayed arrival, put it
            # hundreds of ms off the echo, which then passed for a voice.)
            self._model.forget()
            self._checked = False
            self._waveform.reset()
            self._burst = 0
            self._jumped = True
        elif anchor < self._anchor < math.inf:
            # A less-delayed arrival moved the whole mapping earlier, so the same echo now
            # sits that much nearer in reference samples: the model's delay must follow.
            self._model.move((anchor - self._anchor) * RATE)
        self._anchor = anchor
        end_index = self._reference.index_at(self._anchor + audio_end_ms / 1000)
        last_block = math.floor(end_index / BLOCK) - 1

        samples = frame.astype(np.float64)
        self._model.hear(frame)
        mic_blocks = np.mean(samples.reshape(FRAME_BLOCKS, BLOCK) ** 2, axis=1)
        self.presence.hear(
            float(np.mean(mic_blocks)), self._reference.power, last_block, self.waveform_peak
        )
        self._heard.append((frame, last_block, round(end_index)))
        self._relearn_coupling()
        self._fit_model()
        verdict = self._judge(frame, mic_blocks, end_index, last_block)
        if verdict.echo_only:
            self._echo_frames.append((last_block, float(np.mean(mic_blocks))))
        # Only frames judged pure echo teach the delay estimator: a person talking (over the
        # echo or after it) would pull the correlation peak to a wrong lag.
        self._delay.push(mic_blocks, last_block, self._reference.power, use=verdict.echo_only)
        self._search_waveform(frame, verdict.echo_only, round(end_index))
        return verdict

    def _search_waveform(self, frame: np.ndarray, echo_only: bool, end_index: int) -> None:
        """Look for the delay in the waveforms every other frame of echo until found in
        this burst of echo (~150 ms of it; the envelopes need ~0.6 s). A first delay is
        adopted, and so is one far from the tracked delay (the path moved between
        replies: found again in this burst, where the envelopes took ~1 s); one near it
        only moves the spectral model, which needs the delay to the sample."""
        self._waveform.push(frame, use=echo_only)
        self._frames += 1
        if self._checked or not echo_only or self._frames % 2:
            return
        delay = self._waveform.search(self._reference.samples, end_index)
        if delay is None:
            return
        self._checked = True
        self._jumped = False
        self.presence.echo_found()
        model = self._model.delay
        if model is not None and abs(delay * RATE - model) <= SAME_DELAY_SAMPLES:
            return  # the model's delay holds
        tracked = self._delay.delay_seconds
        if tracked is None or abs(delay - tracked) > DELAY_SLACK_SECONDS:
            self._delay.adopt(delay)
            self._burst = ONSET_FRAMES  # measured on this very burst: no need to doubt it
        # Fitted at the next frame, before it is judged: a frame with a search in it
        # has spent ~1.5 ms already.
        self._refit = (end_index, round(delay * RATE), self._anchor)

    def _fit_model(self) -> None:
        """A new spectral model at the delay just found, fitted at once to the echo-only
        frames of the last 0.5 s (the echo heard while the delay was being found); the
        gate gets its record on them, against the narrow window at the tracked delay."""
        if self._refit is None:
            return
        (end_index, model_delay, anchor), self._refit = self._refit, None
        delay = self._delay.delay_seconds
        assert delay is not None
        frames, bounds = [], []
        for ago, mic in self._waveform.recent():  # up to the frame the search ended on
            end = end_index - ago * FRAME_SAMPLES
            if self._key(end) in self._voice:
                continue
            bound = self._echo_bound(math.floor(end / BLOCK) - 1, delay)
            if bound >= ACTIVE_FRAME_POWER:
                frames.append((end, mic))
                bounds.append(bound)
        record = self._model.refit(model_delay, frames)
        self._model.move((self._anchor - anchor) * RATE)  # if the anchor moved since
        self._gate.forget_model(
            [
                (float(np.mean(mic * mic)), left, bound)
                for (_, mic), left, bound in zip(frames, record, bounds, strict=True)
                if left is not None
            ]
        )

    def _relearn_coupling(self) -> None:
        """When the delay is first measured, the echo-only frames of the last ~2 s are read
        again against the narrow window at that delay, so the gate knows the real
        speaker-to-mic coupling at once instead of after 16 more frames of echo (on a short
        first reply those never came, and the next reply's barge-in met the worst case).
        When the delay moves, those frames held echo at the old delay: start over."""
        delay = self._delay.delay_seconds
        if delay is None:
            return
        if self._coupling_delay is None:
            frames = [
                (mic, self._echo_bound(block, delay))
                for block, mic in self._echo_frames
                if self._key((block + 1) * BLOCK) not in self._voice
            ]
        elif abs(delay - self._coupling_delay) > RELEARN_SHIFT_SECONDS:
            frames = []
            model = self._model.delay
            if model is not None and abs(model / RATE - delay) > DELAY_SLACK_SECONDS:
                self._model.forget()  # the path moved: find it again in the waveforms
                self._checked = False
        else:
            return
        self._coupling_delay = delay
        self._gate.relearn_coupling(frames)

    def _judge(
        self, frame: np.ndarray, mic_blocks: np.ndarray, end_index: float, last_block: int
    ) -> EchoVerdict:
        delay = self._delay.delay_seconds
        echo_bound = self._echo_bound(last_block, delay)
        aligned = delay is not None
        narrow = echo_bound if aligned else None
        self._burst = self._burst + 1 if aligned and echo_bound >= ACTIVE_FRAME_POWER else 0
        if not self._burst and self._checked:
            # A pause: the next burst of echo may come back along another path (a client's
            # jitter buffer resizes in silence); the model waits for the waveforms again.
            self._checked = False
            self._waveform.reset()
        past = False
        if aligned and (self._burst <= ONSET_FRAMES or self._jumped):
            # Nothing at the measured delay yet, but something within the whole searched
            # range: if the path just shrank or grew (a client's jitter buffer adapting),
            # that is where its echo is; and the first frames of a burst are where a
            # changed path shows first. Judge against all of it, crediting no cancellation.
            wide = self._echo_bound(last_block, None)
            if wide >= ACTIVE_FRAME_POWER:
                # (Nothing at all at a delay the waveforms found, with the audio clock
                # whole: the echo there is over, the bot silent since. The listener does
                # not take a voice here for echo on this verdict alone.)
                past = (
                    echo_bound < ACTIVE_FRAME_POWER
                    and not self._jumped
                    and self._model.delay is not None
                )
                echo_bound, aligned = wide, False
        if echo_bound < ACTIVE_FRAME_POWER:
            if self._canceller is not None:
                # Keep AEC3 running on silence so it is in step when the bot speaks again
                # (resuming it cold let the first echo of the next reply through).
                self._cancel(frame, end_index, delay)
            self._gate.decide(echo_bound, 0.0, 0.0, aligned=False)
            return EchoVerdict(frame, False, self.delay_ms)
        verdict = self._echoing(
            frame, mic_blocks, end_index, last_block, echo_bound, aligned, narrow, delay
        )
        return replace(verdict, past_echo=True) if past else verdict

    def _echoing(
        self,
        frame: np.ndarray,
        mic_blocks: np.ndarray,
        end_index: float,
        last_block: int,
        echo_bound: float,
        aligned: bool,
        narrow: float | None,
        delay: float | None,
    ) -> EchoVerdict:
        """A frame in which something sent could be echoing: cancel, then judge."""
        cleaned = self._cancel(frame, end_index, delay)
        residual = np.mean(cleaned.astype(np.float64) ** 2)
        end = round(end_index)
        modelled = aligned and self._checked and self._model.delay is not None
        useful = self._gate.model_gain_db <= self._gate.echo_gain_db - MODEL_USEFUL_DB
        # While a person is heard, the echo is not chased to another delay: a voice like
        # the bot's can match some lag of the reply as well as a moved echo does.
        follow = useful and not self._gate.hearing_speech
        before = self._model.delay
        model = self._model.residual(frame, end, follow_slips=follow) if modelled else None
        if modelled and self._model.delay != before:
            # The model followed the echo to another delay (a client's playout slipped or
            # stalled): the window follows it at once, not after the model's 256 ms of
            # doubt (judged against the old one meanwhile, the moved echo passed for a
            # voice), and this frame and the next few are judged against the whole range
            # with no credit for cancellation, as at the start of a burst.
            assert self._model.delay is not None
            if delay is not None and abs(self._model.delay / RATE - delay) > DELAY_SLACK_SECONDS:
                self._delay.adopt(self._model.delay / RATE)
                narrow = self._echo_bound(last_block, self._delay.delay_seconds)
            self._burst = 1
            echo_bound, aligned = max(echo_bound, self._echo_bound(last_block, None)), False
        echo_only = self._gate.decide(
            echo_bound,
            float(np.mean(mic_blocks)),
            float(residual),
            aligned=aligned,
            narrow_bound=narrow,
            model=model,
        )
        if echo_only and modelled:
            self._model.learn()
        if model is not None and self._model.delay is not None and delay is not None:
            if abs(self._model.delay / RATE - delay) > DELAY_SLACK_SECONDS:
                # The model followed the echo out of the window the gate judges against.
                self._delay.adopt(self._model.delay / RATE)
        suspect = self._gate.suspects_speech
        if echo_only and not suspect:
            return EchoVerdict(cleaned, True, self.delay_ms, echo_window=True, echo_left=model)
        # Near-end speech (or a frame with evidence not yet confirmed: still echo only for
        # the VAD, but it is the first 32 ms of the word if it is one). Hand on the
        # microphone as it was, or with only the model's echo subtracted where the model
        # is seen to remove it well: AEC3's residual suppressor carves the echo's
        # frequencies out of a voice over it, which left Silero deaf to some barge-ins and
        # Whisper unsure of a first "Wait".
        if model is not None and useful:
            frame = self._model.subtract(frame, end)
        return EchoVerdict(
            frame, echo_only, self.delay_ms, echo_window=True, suspect=suspect, echo_left=model
        )

    def _echo_bound(self, last_block: int, delay: float | None) -> float:
        """The loudest 32 ms of reference that can echo in the frame ending at `last_block`."""
        if delay is None:
            newest, oldest = 0.0, self.max_delay_seconds + REVERB_TAIL_SECONDS
        else:
            newest = max(delay - DELAY_SLACK_SECONDS, 0.0)
            oldest = delay + DELAY_SLACK_SECONDS + REVERB_TAIL_SECONDS
        hi = last_block - round(newest / BLOCK_SECONDS)
        lo = last_block - FRAME_BLOCKS + 1 - round(oldest / BLOCK_SECONDS)
        power = self._reference.power.get(lo - FRAME_BLOCKS + 1, hi + 1)
        frame_power = np.convolve(power, np.full(FRAME_BLOCKS, 1 / FRAME_BLOCKS), "valid")
        return float(frame_power.max(initial=0.0))

    def _cancel(self, frame: np.ndarray, end_index: float, delay: float | None) -> np.ndarray:
        if not self.cancelling:
            if self._canceller is not None:
                self._canceller = None
                self._far_end_at = None
                self._gate.forget_erle()
            return frame
        lead = 0.0 if delay is None else max(delay - AEC_LEAD_SECONDS, 0.0)
        target = round(end_index - lead * RATE)
        if self._canceller is None:
            self._canceller = EchoCanceller(RATE)
        if self._far_end_at is None or abs(target - self._far_end_at) > RESYNC_SAMPLES:
            if self._far_end_at is not None and abs(target - self._far_end_at) > RESET_SAMPLES:
                self._canceller.reset()  # AEC3 re-finds a big jump slowly; a fresh start is fast
                self._gate.forget_erle()
            self._far_end_at = target
        far = self._reference.samples.get(self._far_end_at - FRAME_SAMPLES, self._far_end_at)
        self._far_end_at += FRAME_SAMPLES
        # +-1 LSB of dither on both inputs: on digital silence AEC3's filters decay into
        # denormal floats and each call then took 1-6 ms instead of ~0.4 ms.
        far16 = np.clip(np.rint(far) + _DITHER, -32768, 32767).astype(np.int16)
        near16 = np.clip(frame + _DITHER[::-1].astype(np.int32), -32768, 32767).astype(np.int16)
        return self._canceller.process(near16, far16)
