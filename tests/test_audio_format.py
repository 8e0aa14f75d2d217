"""`audio.input.format` / `audio.output.format` in the session: parsed, checked, echoed."""

from __future__ import annotations

import pytest

from server.protocol.audio_format import AudioFormat, AudioFormatError, parse_audio_format
from server.protocol.session_config import SessionConfig, SessionConfigError


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"type": "audio/pcm", "rate": 24000}, AudioFormat("audio/pcm", 24000)),
        ({"type": "audio/pcm"}, AudioFormat("audio/pcm", 24000)),
        ({"type": "audio/pcm", "rate": 16000.0}, AudioFormat("audio/pcm", 16000)),
        ({"type": "audio/pcmu"}, AudioFormat("audio/pcmu", 8000)),
        ({"type": "audio/pcma", "rate": 24000}, AudioFormat("audio/pcma", 8000)),
        ("g711_ulaw", AudioFormat("audio/pcmu", 8000)),
        ("pcm16", AudioFormat("audio/pcm", 24000)),
    ],
)
def test_formats_parse(raw, expected) -> None:
    assert parse_audio_format(raw, "f") == expected


@pytest.mark.parametrize(
    ("raw", "param"),
    [
        ({"type": "audio/opus"}, "f.type"),
        ({}, "f.type"),
        ({"type": "audio/pcm", "rate": 100}, "f.rate"),
        ({"type": "audio/pcm", "rate": "24000"}, "f.rate"),
        ({"type": "audio/pcm", "rate": True}, "f.rate"),
        ("mp3", "f"),
        (5, "f"),
    ],
)
def test_bad_formats_name_the_param(raw, param) -> None:
    with pytest.raises(AudioFormatError) as caught:
        parse_audio_format(raw, "f")
    assert caught.value.param == param


def test_the_session_echoes_its_formats_and_keeps_them_across_updates() -> None:
    config = SessionConfig()
    audio = config.to_dict("sess_1")["audio"]
    assert audio["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert audio["output"]["format"] == {"type": "audio/pcm", "rate": 24000}
    config = config.apply(
        {"audio": {"input": {"format": {"type": "audio/pcmu"}}, "output": {"format": "g711_alaw"}}}
    )
    config = config.apply({"instructions": "Be brief."})
    audio = config.to_dict("sess_1")["audio"]
    assert audio["input"]["format"] == {"type": "audio/pcmu"}
    assert audio["output"]["format"] == {"type": "audio/pcma"}
    assert config.input_format.wire.encoding == "ulaw"
    assert config.output_format.wire.rate == 8000


def test_a_wrong_format_in_an_update_names_the_field() -> None:
    with pytest.raises(SessionConfigError) as caught:
        SessionConfig().apply({"audio": {"output": {"format": {"type": "audio/wav"}}}})
    assert caught.value.param == "session.audio.output.format.type"
    with pytest.raises(SessionConfigError) as caught:
        SessionConfig().apply({"input_audio_format": "flac"})
    assert caught.value.param == "session.input_audio_format"
