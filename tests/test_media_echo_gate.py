"""EchoGate's decision rule on exact powers (the end-to-end behaviour is in
test_media_echo_guard.py)."""

from media.echo.gate import EchoGate, GateParams


def db(x: float) -> float:
    return 10 ** (x / 10)


BOUND = db(75)  # the loudest echo-able reference in the window


def test_no_reference_is_never_echo():
    gate = EchoGate()
    assert gate.decide(0.0, db(70), db(70), aligned=True) is False
    assert gate.decide(10.0, db(30), db(30), aligned=False) is False


def test_echo_level_frames_are_echo_only_before_anything_is_learned():
    gate = EchoGate()
    for _ in range(10):  # mic 8 dB under the reference, the canceller not aligned yet
        assert gate.decide(BOUND, db(67), db(66), aligned=False) is True


def test_a_voice_louder_than_any_echo_counts_after_two_frames():
    gate = EchoGate()
    assert gate.decide(BOUND, db(77), db(60), aligned=False) is True  # one frame: not yet
    assert gate.decide(BOUND, db(77), db(60), aligned=False) is False
    # A dip between syllables keeps the turn (hangover) while the canceller removes little.
    assert gate.decide(BOUND, db(50), db(48), aligned=False) is False
    # A frame the canceller removes almost entirely is echo again at once.
    assert gate.decide(BOUND, db(60), db(30), aligned=False) is True


def test_a_single_loud_frame_is_not_a_person():
    gate = EchoGate()
    assert gate.decide(BOUND, db(80), db(80), aligned=False) is True
    assert gate.decide(BOUND, db(60), db(59), aligned=False) is True


def train(gate: EchoGate, frames: int, mic_db: float, residual_db: float) -> None:
    for _ in range(frames):
        assert gate.decide(BOUND, db(mic_db), db(residual_db), aligned=True) is True


def test_learned_coupling_lets_a_voice_quieter_than_the_worst_case_through():
    params = GateParams()
    gate = EchoGate(params)
    # Echo 12 dB under the reference, cancelled by 25 dB, for long enough to learn both.
    train(gate, params.onset_frames + params.settle_frames + params.erle_frames, 63, 38)
    assert abs(gate.erle_db - 25) < 0.5
    assert abs(gate.echo_gain_db - (-12 + params.coupling_margin_db)) < 0.5
    # A voice 7 dB over the echo, 5 dB under the reference: a person.
    assert gate.decide(BOUND, db(70), db(69), aligned=True) is True
    assert gate.decide(BOUND, db(70), db(69), aligned=True) is False
    # With only the worst-case coupling assumed, the same voice would not count.
    fresh = EchoGate(params)
    assert fresh.decide(BOUND, db(70), db(69), aligned=True) is True
    assert fresh.decide(BOUND, db(70), db(69), aligned=True) is True


def test_a_voice_no_louder_than_the_echo_waits_for_the_bot_to_pause():
    """The documented limit: at echo level, recent talk caps the credited cancellation."""
    params = GateParams()
    gate = EchoGate(params)
    train(gate, params.onset_frames + params.settle_frames + params.erle_frames, 63, 38)
    assert gate.decide(BOUND, db(64), db(62), aligned=True) is True
    assert gate.decide(BOUND, db(64), db(62), aligned=True) is True


def test_a_new_burst_of_reference_gets_no_credit_at_first():
    params = GateParams()
    gate = EchoGate(params)
    train(gate, params.onset_frames + params.settle_frames + params.erle_frames, 63, 38)
    gate.decide(0.0, 0.0, 0.0, aligned=True)  # the bot fell silent, then speaks again
    # The canceller lags the echo's onset: a leaky frame is not credited yet.
    assert gate.decide(BOUND, db(64), db(62), aligned=True) is True
    assert gate.decide(BOUND, db(64), db(62), aligned=True) is True


def test_talk_over_the_echo_does_not_teach_the_gate():
    params = GateParams()
    gate = EchoGate(params)
    train(gate, params.onset_frames + params.settle_frames + params.erle_frames, 63, 38)
    before = gate.erle_db
    for _ in range(20):  # a person talking: loud, barely cancelled
        gate.decide(BOUND, db(78), db(77), aligned=True)
    assert gate.erle_db == before
