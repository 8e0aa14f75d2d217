"""Session configuration: GA and beta shapes in, GA shape out, bad values refused."""

import pytest

from server.config import Config, ConfigError, echo_mode
from server.protocol.session_config import SessionConfig, SessionConfigError
from server.turns.options import TurnDetectionConfig


def test_ga_update_applies_instructions_voice_and_turn_detection():
    config = SessionConfig().apply(
        {
            "type": "realtime",
            "instructions": "Be terse.",
            "audio": {
                "input": {"turn_detection": {"type": "server_vad", "silence_duration_ms": 800}},
                "output": {"voice": "marin"},
            },
            "tools": [],  # ignored, not refused
        }
    )
    assert config.instructions == "Be terse." and config.voice == "marin"
    assert config.turn_detection == TurnDetectionConfig(silence_duration_ms=800)
    rendered = config.to_dict("sess_1")
    assert rendered["audio"]["input"]["turn_detection"]["silence_duration_ms"] == 800
    assert rendered["audio"]["input"]["turn_detection"]["threshold"] == 0.5
    assert rendered["audio"]["output"]["voice"] == "marin"
    assert rendered["type"] == "realtime" and rendered["object"] == "realtime.session"


def test_beta_shape_and_disabling_turn_detection():
    config = SessionConfig().apply({"voice": "alloy", "turn_detection": None})
    assert config.voice == "alloy" and config.turn_detection is None
    assert config.to_dict("s")["audio"]["input"]["turn_detection"] is None


@pytest.mark.parametrize(
    ("update", "param"),
    [
        ({"instructions": 5}, "session.instructions"),
        ({"type": "translation"}, "session.type"),
        ({"audio": {"input": {"turn_detection": {"threshold": 1.5}}}}, "threshold"),
        ({"audio": {"input": {"turn_detection": {"prefix_padding_ms": "300"}}}}, "prefix"),
        ({"audio": {"input": {"turn_detection": {"create_response": 1}}}}, "create_response"),
        ({"audio": {"input": {"turn_detection": {"type": "vad_of_the_future"}}}}, "type"),
        ({"audio": {"input": {"turn_detection": {"eagerness": "extreme"}}}}, "eagerness"),
        ({"audio": {"input": {"turn_detection": {"min_interruption_ms": -1}}}}, "min_interr"),
        ({"audio": "loud"}, "session.audio"),
        # Both shapes are checked when both are given (schemathesis: the one not used
        # was never looked at).
        ({"voice": 5, "audio": {"output": {"voice": "joe"}}}, "session.voice"),
        (
            {"turn_detection": {"threshold": 9}, "audio": {"input": {"turn_detection": None}}},
            "threshold",
        ),
        ("not an object", "session"),
    ],
)
def test_bad_values_are_refused_with_the_parameter(update, param):
    with pytest.raises(SessionConfigError) as info:
        SessionConfig().apply(update)
    assert param in info.value.param


def test_semantic_vad_with_eagerness_round_trips_and_waits_by_eagerness():
    config = SessionConfig().apply(
        {"audio": {"input": {"turn_detection": {"type": "semantic_vad", "eagerness": "low"}}}}
    )
    turn = config.turn_detection
    assert turn is not None and turn.semantic and turn.eagerness == "low"
    rendered = config.to_dict("sess_1")["audio"]["input"]["turn_detection"]
    assert rendered["type"] == "semantic_vad" and rendered["eagerness"] == "low"
    assert "silence_duration_ms" not in rendered
    # The segmenter's own silence limit is the longest semantic wait for that eagerness.
    high = SessionConfig().apply({"turn_detection": {"type": "semantic_vad", "eagerness": "high"}})
    assert high.turn_detection is not None
    assert (
        turn.segmenter_params().silence_duration_ms
        > high.turn_detection.segmenter_params().silence_duration_ms
    )
    # Switching back to server_vad keeps the interruption options and uses silence_duration.
    back = config.apply({"turn_detection": {"type": "server_vad", "silence_duration_ms": 700}})
    assert back.turn_detection is not None and not back.turn_detection.semantic
    assert back.turn_detection.segmenter_params().silence_duration_ms == 700


def test_speculative_reply_is_on_unless_a_session_turns_it_off():
    config = SessionConfig()
    assert config.turn_detection is not None and config.turn_detection.speculative_reply
    off = config.apply({"turn_detection": {"speculative_reply": False}})
    assert off.turn_detection is not None and not off.turn_detection.speculative_reply
    assert off.to_dict("sess_1")["audio"]["input"]["turn_detection"]["speculative_reply"] is False
    with pytest.raises(SessionConfigError, match="speculative_reply"):
        config.apply({"turn_detection": {"speculative_reply": "yes"}})


def test_echo_guard_is_a_per_session_mode_over_the_server_default():
    config = SessionConfig().apply({"turn_detection": {"type": "semantic_vad"}})
    assert config.turn_detection is not None and config.turn_detection.echo_guard is None
    on = config.apply({"turn_detection": {"echo_guard": True}})  # the old boolean: on
    assert on.turn_detection is not None and on.turn_detection.echo_guard == "on"
    assert on.to_dict("sess_1")["audio"]["input"]["turn_detection"]["echo_guard"] == "on"
    kept = on.apply({"turn_detection": {"eagerness": "high"}})
    assert kept.turn_detection is not None and kept.turn_detection.echo_guard == "on"
    off = on.apply({"turn_detection": {"echo_guard": False}})
    assert off.turn_detection is not None and off.turn_detection.echo_guard == "off"
    auto = off.apply({"turn_detection": {"echo_guard": "auto"}})
    assert auto.turn_detection is not None and auto.turn_detection.echo_guard == "auto"
    back = on.apply({"turn_detection": {"echo_guard": None}})
    assert back.turn_detection is not None and back.turn_detection.echo_guard is None
    for bad in ("yes", 1, "AUTO"):
        with pytest.raises(SessionConfigError, match="echo_guard"):
            config.apply({"turn_detection": {"echo_guard": bad}})


def test_the_server_echo_guard_is_auto_by_default_and_takes_the_old_booleans():
    assert Config.from_env({}).echo_guard == "auto"
    assert Config.from_env({"HARK_ECHO_GUARD": "auto"}).echo_guard == "auto"
    assert Config.from_env({"HARK_ECHO_GUARD": "0"}).echo_guard == "off"
    assert [echo_mode("HARK_ECHO_GUARD", v) for v in ("auto", "1", "true", "on")] == [
        "auto",
        "on",
        "on",
        "on",
    ]
    assert [echo_mode("HARK_ECHO_GUARD", v) for v in ("0", "false", "off")] == ["off"] * 3
    with pytest.raises(ConfigError, match="HARK_ECHO_GUARD"):
        echo_mode("HARK_ECHO_GUARD", "maybe")


def test_interruption_options_are_hark_extensions_of_turn_detection():
    config = SessionConfig().apply(
        {
            "turn_detection": {
                "min_interruption_ms": 800,
                "min_interruption_words": 2,
                "false_interruption_timeout_ms": 1500,
            }
        }
    )
    turn = config.turn_detection
    assert turn is not None
    assert turn.interruption.min_duration_ms == 800
    assert turn.interruption.min_words == 2
    assert turn.interruption.false_interruption_timeout_ms == 1500
    rendered = config.to_dict("sess_1")["audio"]["input"]["turn_detection"]
    assert rendered["min_interruption_ms"] == 800


def test_hark_fields_are_checked_and_fixed_for_a_live_call() -> None:
    config = SessionConfig().apply(
        {"conversation": "conv_0123456789abcdef0123", "persona": "ava", "recording": True}
    )
    shown = config.to_dict("sess_1")
    assert shown["conversation"] == "conv_0123456789abcdef0123"
    assert shown["persona"] == "ava" and shown["recording"] is True
    for bad, param in (
        ({"conversation": "conv_x"}, "session.conversation"),
        ({"conversation": 5}, "session.conversation"),
        ({"persona": ["ava"]}, "session.persona"),
        ({"recording": "yes"}, "session.recording"),
    ):
        with pytest.raises(SessionConfigError) as raised:
            SessionConfig().apply(bad)
        assert raised.value.param == param
    config.check_fixed(config.apply({"instructions": "Be brief."}))  # other fields change
    for change in ({"persona": "assistant"}, {"recording": False}, {"persona": None}):
        with pytest.raises(SessionConfigError, match="cannot be changed during a call"):
            config.check_fixed(config.apply(change))
