"""WaveformDelay and shift_of on real speech: the echo's delay from the waveforms."""

import numpy as np

from media.echo.align import WaveformDelay, shift_of
from media.echo.reference import History
from tests.speech import speak

RATE = 16000
FRAME = 512
LEAD = RATE  # one second of silence before the reply


def reference() -> np.ndarray:
    reply = speak("The capital of Australia is Canberra, not Sydney.").astype(np.float64)
    return np.concatenate([np.zeros(LEAD), reply, np.zeros(RATE)])


def echo_of(ref: np.ndarray, delay: int, gain_db: float = -9.0, seed: int = 0) -> np.ndarray:
    """`ref` through a small speaker (a short low-pass, one reflection), `delay` samples
    late, attenuated, with a little noise: the microphone of a client without AEC."""
    path = np.zeros(64)
    path[0], path[1], path[40] = 0.7, 0.3, 0.2
    echo = np.convolve(ref, path)[: len(ref)] * 10 ** (gain_db / 20)
    mic = np.zeros(len(ref))
    mic[delay:] = echo[: len(ref) - delay]
    return mic + np.random.default_rng(seed).standard_normal(len(ref)) * 30


def run(ref: np.ndarray, mic: np.ndarray, use_from: int = 0) -> list[tuple[int, float]]:
    """Every search's answer as (frame end, delay in s), frames used from `use_from` on
    (before it they are blanked, as frames with the bot silent are)."""
    history = History(len(ref) + RATE, np.float32)
    history.append(ref.astype(np.float32))
    waveform = WaveformDelay()
    found = []
    for end in range(FRAME, len(mic) + 1, FRAME):
        waveform.push(mic[end - FRAME : end].astype(np.int16), use=end > use_from)
        if end % (2 * FRAME) == 0:
            delay = waveform.search(history, end)
            if delay is not None:
                found.append((end, delay))
    return found


def test_the_delay_is_found_to_the_sample_within_300_ms_of_echo():
    ref = reference()
    onset = LEAD + int(np.argmax(np.abs(ref[LEAD:]) > 300))
    for delay_ms in (120, 333, 780):
        delay = delay_ms * RATE // 1000
        found = run(ref, echo_of(ref, delay))
        assert found, delay_ms
        end, measured = found[0]
        assert abs(measured * RATE - delay) <= 2, (delay_ms, measured)
        assert end - (onset + delay) <= 0.3 * RATE, (delay_ms, end)


def test_a_voice_that_is_not_the_echo_gives_no_delay():
    """A person talking while the bot speaks, no echo at all (a client with AEC): no
    delay, even for a voice synthesized like the bot's, whose onset or pitch lined up
    with the reply's for hundreds of ms before each frame's correlation was asked."""
    ref = reference()
    lines = [
        "Wait, stop. Tell me about dogs instead, please.",
        "What is the weather like tomorrow?",
        "Hold on, can you say that again?",
    ]
    for line in lines:
        voice = speak(line).astype(np.float64)
        for offset in (0, 800, 4000):
            mic = np.random.default_rng(1).standard_normal(len(ref)) * 30
            n = min(len(voice), len(ref) - LEAD - offset)
            mic[LEAD + offset : LEAD + offset + n] += voice[:n]
            assert run(ref, mic) == [], (line, offset)


def test_loud_noise_starting_with_the_reply_gives_no_delay():
    """Frames are blanked until the reference plays; the step from blank to noise must
    not correlate with the reply's own onset (it did at 2-5 ms before the edges were
    tapered)."""
    ref = reference()
    mic = np.random.default_rng(2).standard_normal(len(ref)) * 1000  # -30 dBFS: "loud"
    assert run(ref, mic, use_from=LEAD) == []


def test_a_slip_of_the_echo_is_measured():
    """The echo comes `slip` samples later than the delay in use expects."""
    ref = reference()
    mic = echo_of(ref, 5000)
    at = LEAD + 5000 + RATE // 2  # half a second into the echo
    window = mic[at : at + 2 * FRAME]
    for slip in (-320, 0, 160, 640):
        expected = 5000 - slip
        segment = ref[at - expected - 1280 : at - expected + 2 * FRAME + 1280]
        shift, best, here = shift_of(window, segment, 1280)
        assert abs(shift - slip) <= 1, slip
        assert best > 0.9
        assert (here > 0.9) == (abs(slip) <= 1)
