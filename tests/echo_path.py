"""A simulated client without echo cancellation, on the server's clock, for echo tests.

The server sends a reply as 20 ms 48 kHz frames (silence before and after, as the
outbound track does). The client plays it after the downlink and its jitter buffer, its
speaker couples into its microphone through a small room (direct path, reflections, a
decaying reverb tail, a tinny speaker's band limit) at `gain_db`, a little noise is
added, and optionally a real user utterance. The microphone stream then travels back
and reaches the server as 32 ms 16 kHz frames with arrival jitter. Every event is fed to
the guard in server-time order, exactly as the session would see it.

With `room=False` the echo is the reply itself, delayed and attenuated, as the test
client over real WebRTC makes it (tests/acoustic.py) and as a speaker a few cm from the
microphone (glasses) mostly is. `early_barge_in_cases` put the user 150-400 ms into the
echo of a call's first reply, as `echo_speech` in tests/bench/turn_taking.py does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from media.echo.guard import EchoGuard
from media.resample import Resampler
from media.segmenter import Event, SpeechSegmenter, SpeechStarted, SpeechStopped, TurnDetection
from media.vad import SileroModel, SileroVad
from server.turns.echo_listening import EchoListener
from server.turns.own_words import OwnWords
from tests.speech import speak

RATE = 16000
REPLY_AT = 1.0  # server time the reply starts; the track sends silence before it
MIC_T0 = 0.25  # server time the client's microphone audio clock starts

REPLIES = [
    "Sure. The weather today is sunny with a light breeze, and it stays warm until evening.",
    "I set a timer for ten minutes. I will tell you when it is done.",
    "The capital of Australia is Canberra, not Sydney, which surprises a lot of people.",
    "Your next meeting is at three o'clock with the design team in room four.",
    "Here is a quick recipe: boil the pasta, toss it with garlic, olive oil and lemon.",
    "Turn left at the next corner, then walk two blocks and the cafe is on your right.",
    "The train to Boston leaves at half past six from platform nine.",
    "I added milk, eggs and bread to your shopping list.",
    "It is about twelve degrees outside right now, so you may want a jacket.",
    "Mount Everest is eight thousand eight hundred and forty nine meters tall.",
    "Your battery is at forty percent, which should last for about three more hours.",
    "The museum opens at nine in the morning and closes at five on weekdays.",
    "I found three Italian restaurants nearby. The closest one is five minutes away.",
    "Light travels about three hundred thousand kilometers every second.",
    "You walked eight thousand steps today, a little more than yesterday.",
    "The next bus arrives in four minutes at the stop across the street.",
    "Your package was delivered this morning and left at the front door.",
    "Water boils at one hundred degrees Celsius at sea level.",
    "I reminded you to call your sister at seven tonight.",
    "The game ended three to one, and the home team scored twice in the second half.",
]
USER_LINES = [
    "Wait, stop. What about tomorrow?",
    "Hold on, can you say that again?",
    "No, I meant the other one.",
    "Actually, cancel that please.",
]


@dataclass
class EchoCase:
    reply: str
    acoustic_ms: float  # speaker-to-mic path inside the client, 100-300 ms
    network_ms: float  # downlink + jitter buffer + uplink, constant per case
    gain_db: float  # echo level relative to what was sent, -6..-12 dB
    seed: int
    user: str | None = None
    user_at: float = 0.0  # user onset, seconds after the reply starts
    user_gain_db: float = 0.0
    room: bool = True  # False: the echo is a delayed, attenuated copy (no reverb)

    @property
    def delay_ms(self) -> float:
        return self.acoustic_ms + self.network_ms


@dataclass
class CaseResult:
    case: EchoCase
    started_ms: list[int] = field(default_factory=list)  # speech_started, mic audio clock
    detected_ms: list[int] = field(default_factory=list)  # audio_end_ms of those frames
    mic: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int16))
    cleaned: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int16))
    echo: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float64))
    user: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float64))  # as mixed in
    echo_only: list[bool] = field(default_factory=list)  # the guard's verdict, per frame
    user_onset_ms: int | None = None  # first voiced 10 ms of the user, mic audio clock
    reply_echo_ms: int = 0  # when the (last) reply's echo reaches the server, mic clock
    delay_ms: float | None = None


def echo_cases(n: int, user: bool, seed: int = 0) -> list[EchoCase]:
    """`n` cases spread over replies, delays and gains, deterministically."""
    rng = np.random.default_rng(seed)
    cases = []
    for i in range(n):
        cases.append(
            EchoCase(
                reply=REPLIES[i % len(REPLIES)],
                acoustic_ms=float(rng.uniform(100, 300)),
                network_ms=float(rng.choice([60.0, 150.0, 300.0])),
                gain_db=float(rng.uniform(-12, -6)),
                seed=seed * 1000 + i,
                user=USER_LINES[i % len(USER_LINES)] if user else None,
                user_at=float(rng.uniform(0.8, 2.0)),
                user_gain_db=float(rng.uniform(-3, 3)),
            )
        )
    return cases


def early_barge_in_cases(n: int, *, room: bool, seed: int = 11) -> list[EchoCase]:
    """First-reply barge-ins 150-400 ms into the echo, the user at the bot's level
    (+-3 dB): the delay is barely known and nothing has converged."""
    rng = np.random.default_rng(seed)
    return [
        replace(
            case,
            user_at=case.delay_ms / 1000 + float(rng.uniform(0.15, 0.4)),
            user_gain_db=float(rng.uniform(-3, 3)),
            room=room,
        )
        for case in echo_cases(n, user=True, seed=seed)
    ]


def room_response(rng: np.random.Generator) -> np.ndarray:
    """Direct path, a few reflections and a 150 ms decaying tail, band-limited like a
    small speaker (~250 Hz-5 kHz); unit energy."""
    n = int(0.2 * RATE)
    ir = np.zeros(n)
    ir[0] = 1.0
    for _ in range(6):
        ir[rng.integers(int(0.002 * RATE), int(0.03 * RATE))] += rng.uniform(-0.5, 0.5)
    t = np.arange(n) / RATE
    ir += rng.standard_normal(n) * 0.08 * np.exp(-t / 0.05)
    spectrum = np.fft.rfft(ir, 2 * n)
    freqs = np.fft.rfftfreq(2 * n, 1 / RATE)
    spectrum *= (freqs > 250) / (1 + (freqs / 5000) ** 4)
    ir = np.fft.irfft(spectrum)[:n]
    return ir / np.sqrt(np.sum(ir * ir))


def delayed(echo: np.ndarray, delay_ms: float, n_mic: int) -> np.ndarray:
    """`echo` (on the send clock) as it reaches the server `delay_ms` later, mic indexed."""
    delay = int(delay_ms * RATE / 1000) - int(MIC_T0 * RATE)
    out = np.zeros(n_mic)
    src = echo[max(-delay, 0) :]
    out[max(delay, 0) : max(delay, 0) + len(src)] = src[: n_mic - max(delay, 0)]
    return out


def voiced_onset_ms(pcm: np.ndarray) -> int:
    rms = np.sqrt(np.mean(pcm[: len(pcm) // 160 * 160].reshape(-1, 160).astype(float) ** 2, 1))
    return int(np.nonzero(rms > 300)[0][0]) * 10


def run_case(
    case: EchoCase,
    guard: EchoGuard | None,
    *,
    warm_reply: str | None = None,
    tail_seconds: float = 2.0,
    with_echo: bool = True,
    delay_change_ms: float = 0.0,
    slip_ms: float | tuple[float, ...] = 0.0,
    stall_ms: float = 0.0,
) -> CaseResult:
    """Play the case through `guard` (None: no echo handling) into real Silero and the
    real segmenter. `warm_reply` first plays another reply through the same guard, as
    earlier turns of a call would, so the delay is already known. `with_echo=False`
    gives the user's voice alone: the baseline for onset delays. `delay_change_ms` moves
    the echo path by that much just before the (last) reply, as a client's jitter buffer
    growing or shrinking would; `slip_ms` moves it by that much 1 s into the (last) reply's
    echo, as a client's playout buffer slipping by a packet mid-reply would (several:
    one after another, 200 ms apart, each on top of the ones before). `stall_ms` stalls
    the server that long 1 s into the (last) reply's echo: the microphone frames due
    meanwhile arrive in a burst at its end, after the inbound reader fed as much
    silence for the gap (`media.inbound`), so the audio clock runs ahead from then on."""
    rng = np.random.default_rng(case.seed)
    reply48 = speak(case.reply, 48000)
    lead = np.zeros(int(REPLY_AT * 48000), np.int16)
    parts = [lead, reply48]
    if warm_reply is not None:
        parts = [lead, speak(warm_reply, 48000), np.zeros(48000, np.int16), reply48]
    reply_at = len(np.concatenate(parts[:-1])) / 48000
    sent48 = np.concatenate([*parts, np.zeros(int(tail_seconds * 48000), np.int16)])
    sent48 = sent48[: len(sent48) // 960 * 960]
    resampler = Resampler(RATE)
    sent16 = np.concatenate([resampler.pcm(sent48, 48000), resampler.flush()]).astype(float)

    # What reaches the server at server time t (s) lives at mic index (t - MIC_T0) * RATE.
    duration = len(sent48) / 48000
    n_mic = int((duration - MIC_T0) * RATE) // 512 * 512
    response = room_response(rng)  # drawn either way: the rest of the case stays the same
    path = np.convolve(sent16, response)[: len(sent16)] if case.room else sent16
    echo = path * 10 ** (case.gain_db / 20)
    if not with_echo:
        echo[:] = 0.0
    echo_at_mic = delayed(echo, case.delay_ms, n_mic)
    if delay_change_ms:
        switch = int((reply_at - 0.1 - MIC_T0) * RATE)
        echo_at_mic[switch:] = delayed(echo, case.delay_ms + delay_change_ms, n_mic)[switch:]
    moved = 0.0
    for k, step in enumerate(slip_ms if isinstance(slip_ms, tuple) else (slip_ms,)):
        if not step:
            continue
        moved += step
        slip = int((reply_at + case.delay_ms / 1000 + 1.0 + 0.2 * k - MIC_T0) * RATE)
        echo_at_mic[slip:] = delayed(echo, case.delay_ms + moved, n_mic)[slip:]
    mic = echo_at_mic + rng.standard_normal(n_mic) * 30.0  # ~ -61 dBFS of noise
    result = CaseResult(case=case, echo=echo_at_mic)
    result.reply_echo_ms = round((reply_at + case.delay_ms / 1000 - MIC_T0) * 1000)
    if case.user is not None:
        user = speak(case.user).astype(float) * 10 ** (case.user_gain_db / 20)
        at = int((reply_at + case.user_at - MIC_T0) * RATE)
        mic[at : at + len(user)] += user[: n_mic - at]
        result.user = np.zeros(n_mic)
        result.user[at : at + len(user)] = user[: n_mic - at]
        result.user_onset_ms = at * 1000 // RATE + voiced_onset_ms(user.astype(np.int16))
    mic_pcm = np.clip(np.rint(mic), -32768, 32767).astype(np.int16)

    vad = SileroVad(SileroModel.load())
    segmenter = SpeechSegmenter(TurnDetection())
    far_times = np.arange(len(sent48) // 960) * 0.02
    n_frames = n_mic // 512
    arrivals = MIC_T0 + (np.arange(n_frames) + 1) * 0.032 + rng.uniform(0, 0.015, n_frames)
    frames = [(mic_pcm[k * 512 : (k + 1) * 512], float(arrivals[k])) for k in range(n_frames)]
    if stall_ms:
        k0 = int((reply_at + case.delay_ms / 1000 + 1.0 - MIC_T0) / 0.032)
        end = arrivals[k0] + stall_ms / 1000
        late = [(pcm, max(at, end + 0.001 * i)) for i, (pcm, at) in enumerate(frames[k0:])]
        fill = [(np.zeros(512, np.int16), end)] * round(stall_ms / 32)
        frames = frames[:k0] + fill + late
    cleaned = []
    f = 0
    for k, (frame, arrival) in enumerate(frames):
        while guard is not None and f < len(far_times) and far_times[f] <= arrival:
            guard.far_end(sent48[f * 960 : (f + 1) * 960], float(far_times[f]))
            f += 1
        end_ms = (k + 1) * 32
        echo_only = False
        if guard is not None:
            verdict = guard.near_end(frame, end_ms, now=arrival)
            frame, echo_only = verdict.frame, verdict.echo_only
            result.echo_only.append(echo_only)
        cleaned.append(frame)
        p = vad(frame)
        for event in segmenter.push(frame, 0.0 if echo_only else p, end_ms):
            if isinstance(event, SpeechStarted):
                result.started_ms.append(event.audio_start_ms)
                result.detected_ms.append(end_ms)
    result.mic = mic_pcm
    result.cleaned = np.concatenate(cleaned)
    result.delay_ms = None if guard is None else guard.delay_ms
    return result


def erle_db(result: CaseResult, from_ms: int = 0) -> float:
    """Echo reduction over the frames that carry echo: mic power / cleaned power."""
    n = len(result.cleaned) // 512 * 512
    echo = result.echo[:n].reshape(-1, 512)
    loud = np.mean(echo**2, axis=1) > 1e4
    loud[: from_ms // 32] = False
    mic = result.mic[:n].reshape(-1, 512)[loud].astype(float)
    cleaned = result.cleaned[:n].reshape(-1, 512)[loud].astype(float)
    return float(10 * np.log10(np.sum(mic**2) / max(np.sum(cleaned**2), 1.0)))


def listen_into(
    listener: EchoListener,
    segmenter: SpeechSegmenter,
    vad: Callable[[np.ndarray], float],
    frame: np.ndarray,
    end_ms: int,
    now: float,
) -> list[Event]:
    """One microphone frame through the listener into the segmenter, as TurnTaking does:
    a replayed voice first (the turn so far reset), then the frame itself."""
    in_turn = segmenter.speaking
    heard = listener.hear(frame, end_ms, vad, 0.5, in_turn=in_turn, now=now)
    if listener.refit.due_in_silence(heard.probability >= 0.5, in_turn):
        listener.refit.fit()
    if heard.replay:
        segmenter.reset()
    raw = not listener.gating
    pushed = [(h.raw if raw else h.frame, h.probability, h.audio_end_ms) for h in heard.replay]
    return [
        e
        for item in [*pushed, (heard.frame, heard.probability, end_ms)]
        for e in segmenter.push(*item)
    ]


class ListeningClient:
    """The whole listener of one simulated call (`EchoListener`, as `run_case`'s guard)
    into a real Silero and segmenter: where turns started (ms), their audio as the gate
    handed it and as the transcript hears it (`refitted`), and where each ended.
    `forced`: every acoustic rule that hears a person misses (the onset check, the
    voice rule; the quiet rule too where a test patches `EchoPresence.hold_peak`);
    `echo_found=False`: the waveform search never finds the echo."""

    def __init__(
        self, own_words: OwnWords | None = None, *, forced: bool = False, echo_found: bool = True
    ) -> None:
        self.listener = EchoListener("auto")
        self.listener.own_words = own_words
        self.guard = self.listener.guard
        self.vad = SileroVad(SileroModel.load())
        self.segmenter = SpeechSegmenter(TurnDetection())
        self.delay_ms = None
        self.started: list[int] = []
        self.turns: list[np.ndarray] = []
        self.refitted: list[np.ndarray] = []
        self.ended_ms: list[int] = []
        if forced:
            self.guard.voice_could_be_echo = lambda voiced: True  # type: ignore[method-assign]
            self.guard.presence.voice_held = lambda peak: False  # type: ignore[method-assign]
        if not echo_found:
            self.guard.presence.echo_found = lambda: None  # type: ignore[method-assign]

    def far_end(self, frame: np.ndarray, sent_at: float) -> None:
        self.guard.far_end(frame, sent_at)

    def near_end(self, frame: np.ndarray, end_ms: int, now: float | None = None) -> object:
        assert now is not None
        for event in listen_into(self.listener, self.segmenter, self.vad, frame, end_ms, now):
            if isinstance(event, SpeechStarted):
                self.started.append(event.audio_start_ms)
            elif isinstance(event, SpeechStopped):
                self.turns.append(event.audio)
                self.refitted.append(self.listener.refit.apply(event.audio, event.audio_end_ms))
                self.ended_ms.append(event.audio_end_ms)
        return type("Verdict", (), {"frame": frame, "echo_only": False})
