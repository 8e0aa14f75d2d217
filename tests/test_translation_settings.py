"""Translation session settings and language routing, without a server (fast, exact)."""

from __future__ import annotations

import pytest

from server.translation.pairs import Capabilities, UnsupportedPair
from server.translation.settings import TranslationSettings, TranslationSettingsError


def test_defaults_and_the_sdk_shape():
    session = TranslationSettings().to_dict("sess_1", 10)
    assert session == {
        "id": "sess_1",
        "type": "translation",
        "model": "gpt-realtime-translate",
        "expires_at": 10,
        "audio": {
            "input": {"transcription": None, "noise_reduction": None},
            "output": {"language": "en"},
        },
    }


def test_update_changes_language_transcription_and_noise_reduction():
    settings = TranslationSettings().apply(
        {
            "audio": {
                "input": {
                    "transcription": {"model": "whisper-1", "language": "es"},
                    "noise_reduction": {"type": "near_field"},
                },
                "output": {"language": "pt-BR"},
            }
        }
    )
    assert settings.output_language == "pt-BR" and settings.target == "pt"
    assert settings.source_language == "es" and settings.transcription_model == "whisper-1"
    assert settings.noise_reduction == {"type": "near_field", "strength": 1.0}
    kept = settings.apply({"audio": {"input": {"noise_reduction": {"type": "far_field"}}}})
    assert kept.noise_reduction == {"type": "far_field", "strength": 1.0}
    assert kept.apply({"audio": {"input": {"transcription": None}}}).transcription_model is None


@pytest.mark.parametrize(
    ("raw", "param"),
    [
        ({"model": "other"}, "session.model"),
        ({"type": "realtime"}, "session.type"),
        ({"audio": {"output": {"language": "english please"}}}, "session.audio.output.language"),
        ({"audio": {"input": {"format": {"type": "audio/pcmu"}}}}, "session.audio.input.format"),
        (
            {"audio": {"input": {"format": {"type": "audio/pcm", "rate": 16000}}}},
            "session.audio.input.format",
        ),
        (
            {"audio": {"input": {"transcription": {"model": ""}}}},
            "session.audio.input.transcription",
        ),
        (
            {"audio": {"input": {"noise_reduction": {"type": "loud"}}}},
            "session.audio.input.noise_reduction",
        ),
        ({"audio": "en"}, "session.audio"),
    ],
)
def test_bad_settings_name_the_parameter(raw, param):
    with pytest.raises(TranslationSettingsError) as refused:
        TranslationSettings().apply(raw)
    assert refused.value.param == param


def test_the_model_is_set_at_creation_only():
    assert TranslationSettings().apply({"model": "m"}, creating=True).model == "m"


def test_routes_offline():
    offline = Capabilities(multilingual=True, llm=False)
    assert offline.route("es", "en") == "whisper"
    assert offline.route("en", "pt") == "marian"
    assert offline.route("pt", "en") == "marian"
    assert offline.route("es", "pt") == "whisper+marian"
    assert offline.route("en", "en") == "same"
    offline.check_target("pt")
    with pytest.raises(UnsupportedPair) as refused:
        offline.check_target("de", "session.audio.output.language")
    assert (
        "en → pt" in refused.value.message and "any Whisper language → en" in refused.value.message
    )
    with pytest.raises(UnsupportedPair):
        offline.route("en", "de")


def test_english_only_whisper_and_the_llm():
    english_only = Capabilities(multilingual=False, llm=False)
    with pytest.raises(UnsupportedPair):
        english_only.route("es", "en")
    assert english_only.route("en", "pt") == "marian"
    with_llm = Capabilities(multilingual=True, llm=True)
    with_llm.check_target("de")
    assert with_llm.route("en", "de") == "llm" and with_llm.route("es", "en") == "whisper"
