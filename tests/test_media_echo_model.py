"""The spectral echo model on real speech: fitted at once, a voice stays, slips followed."""

import numpy as np

from media.echo.model import AlignedEchoModel
from media.echo.reference import History
from tests.speech import speak

RATE = 16000
FRAME = 512
DELAY = 4000  # samples: 250 ms


def db(x: float) -> float:
    return 10 * np.log10(x)


def setup(slip_at: int | None = None, slip: int = 0) -> tuple[History, np.ndarray]:
    """A reply on the reference timeline and a microphone hearing it `DELAY` samples
    later through a small speaker at -9 dB (plus noise); from sample `slip_at` on the
    echo comes `slip` samples later still (a playout buffer slipping by a packet)."""
    reply = speak("Your next meeting is at three o'clock with the design team in room four.")
    ref = np.concatenate([np.zeros(RATE), reply.astype(np.float64), np.zeros(RATE)])
    path = np.zeros(48)
    path[0], path[1], path[30] = 0.6, 0.3, 0.15
    echo = np.convolve(ref, path)[: len(ref)] * 10 ** (-9 / 20)
    mic = np.zeros(len(ref))
    mic[DELAY:] = echo[:-DELAY]
    if slip_at is not None:
        moved = np.zeros(len(ref))
        moved[DELAY + slip :] = echo[: len(ref) - DELAY - slip]
        mic[slip_at:] = moved[slip_at:]
    mic += np.random.default_rng(0).standard_normal(len(ref)) * 30
    history = History(len(ref) + RATE, np.float32)
    history.append(ref.astype(np.float32))
    return history, mic


def fitted(history: History, mic: np.ndarray, start: int, frames: int) -> AlignedEchoModel:
    model = AlignedEchoModel(history)
    ends = [start + (k + 1) * FRAME for k in range(frames)]
    for end in ends:
        model.hear(mic[end - FRAME : end])
    model.refit(DELAY, [(end, mic[end - FRAME : end]) for end in ends])
    return model


def loud_frames(mic: np.ndarray, start: int, stop: int) -> list[int]:
    ends = range(start + FRAME, stop, FRAME)
    return [e for e in ends if np.mean(mic[e - FRAME : e] ** 2) > 1e5]


def test_a_few_frames_of_echo_fit_a_model_that_removes_the_next_ones():
    history, mic = setup()
    start = RATE + DELAY  # the echo's start
    model = fitted(history, mic, start, 6)  # ~190 ms of echo
    removed = []
    for end in loud_frames(mic, start + 6 * FRAME, start + RATE):
        frame = mic[end - FRAME : end].astype(np.int16)
        model.hear(frame)
        left = model.residual(frame, end, follow_slips=True)
        removed.append(db(np.mean(frame.astype(np.float64) ** 2) / left))
        model.learn()
    assert len(removed) > 10
    assert np.median(removed) > 15, removed


def test_a_voice_over_the_echo_stays_in_the_residual():
    """A voice is not in the reference: the model leaves it whole, and is not moved by it
    (a voice synthesized like the bot's can match some lag of the reply for a frame; a
    frame where one does has no say, the rest keep the voice)."""
    history, mic = setup()
    start = RATE + DELAY
    voice = speak("Wait, stop. Tell me about dogs instead.").astype(np.float64)
    at = start + 8 * FRAME
    alone = np.zeros(len(mic))
    alone[at : at + len(voice)] = voice
    talk = np.clip(mic + alone, -32768, 32767)
    model = fitted(history, mic, start, 8)
    kept, silent = [], 0
    for end in range(at + FRAME, at + len(voice), FRAME):
        frame = talk[end - FRAME : end].astype(np.int16)
        model.hear(frame)
        left = model.residual(frame, end, follow_slips=True)
        voice_power = np.mean(alone[end - FRAME : end] ** 2)
        if voice_power > 1e6:  # a loud frame of the voice (-35 dBFS and up)
            if left is None:
                silent += 1
            else:
                kept.append(db(left / voice_power))
    assert len(kept) > 20
    assert silent <= len(kept) // 5
    assert np.median(kept) > -1.5, kept  # the voice's own power, give or take
    assert model.delay is not None and abs(model.delay - DELAY) <= 2


def test_the_model_follows_the_echo_when_the_playout_slips():
    for slip in (-320, 160, 640):  # 20 ms earlier, 10 ms and 40 ms later
        slip_at = RATE + DELAY + RATE // 2
        history, mic = setup(slip_at, slip)
        model = fitted(history, mic, RATE + DELAY, 8)
        start = RATE + DELAY + 8 * FRAME
        left_after: list[float] = []
        for end in range(start + FRAME, slip_at + RATE // 2, FRAME):
            frame = mic[end - FRAME : end].astype(np.int16)
            model.hear(frame)
            left = model.residual(frame, end, follow_slips=True)
            loud = np.mean(frame.astype(np.float64) ** 2) > 1e5
            if left is not None:
                model.learn()
                if end > slip_at and loud:
                    left_after.append(db(np.mean(frame.astype(np.float64) ** 2) / left))
        assert model.delay is not None and abs(model.delay - (DELAY + slip)) <= 1, slip
        # Once followed, the echo is removed again (left whole, it would pass for a voice).
        assert np.median(left_after[-8:]) > 10, (slip, left_after)


def stalled(slip: int, slip_at: int) -> tuple[History, np.ndarray]:
    """As `setup`, but the client's playout stalls at `slip_at` for `slip` samples: the
    echo is silent there, then goes on where it stopped, `slip` samples later (what
    tests/acoustic.py's EchoingMicrophone does when its process stalls on a busy machine,
    as a real client's jitter buffer does after a late packet)."""
    history, mic = setup()
    moved = np.zeros(len(mic))
    moved[slip_at + slip :] = mic[slip_at : len(mic) - slip]
    mic[slip_at:] = moved[slip_at:]
    return history, mic


def test_a_stalled_playout_leaves_at_most_the_frame_with_the_stall_unexplained():
    """A playout that stalls by a packet in mid-frame: the frame holding the stall may
    look like a voice, but the next one must not (two in a row are a voice to the gate).
    The first whole frame's own correlation peak misses the new delay by several
    samples; followed only to that peak +-1, it stayed unexplained (over WebRTC the bot
    then interrupted itself under load)."""
    for slip in (160, 320, 640):
        for offset in range(0, FRAME, 32):
            slip_at = RATE + DELAY + RATE // 2 + offset
            history, mic = stalled(slip, slip_at)
            model = fitted(history, mic, RATE + DELAY, 8)
            run, longest = 0, 0
            for end in range(RATE + DELAY + 9 * FRAME, slip_at + RATE // 2, FRAME):
                frame = mic[end - FRAME : end].astype(np.int16)
                model.hear(frame)
                left = model.residual(frame, end, follow_slips=True)
                power = np.mean(frame.astype(np.float64) ** 2)
                # What the gate's model rule would take for a person at the echo's level.
                unexplained = left is not None and power > 1e5 and db(power / left) < 12
                run = run + 1 if unexplained else 0
                longest = max(longest, run)
                if left is not None:
                    model.learn()
            assert longest <= 1, (slip, offset, longest)
            assert model.delay == DELAY + slip, (slip, offset, model.delay)
