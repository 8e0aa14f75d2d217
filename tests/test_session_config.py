"""Session configuration: GA and beta shapes in, GA shape out, bad values refused."""

import pytest

from server.session_config import SessionConfig, SessionConfigError, TurnDetectionConfig


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
        ({"type": "transcription"}, "session.type"),
        ({"audio": {"input": {"turn_detection": {"threshold": 1.5}}}}, "threshold"),
        ({"audio": {"input": {"turn_detection": {"prefix_padding_ms": "300"}}}}, "prefix"),
        ({"audio": {"input": {"turn_detection": {"create_response": 1}}}}, "create_response"),
        ({"audio": {"input": {"turn_detection": {"type": "semantic_vad"}}}}, "type"),
        ({"audio": "loud"}, "session.audio"),
        ("not an object", "session"),
    ],
)
def test_bad_values_are_refused_with_the_parameter(update, param):
    with pytest.raises(SessionConfigError) as info:
        SessionConfig().apply(update)
    assert param in info.value.param
