"""Build the configured engines.

Each engine module is imported only when chosen, so a server on a remote LLM never loads
llama.cpp, and an espeak-only box never imports onnxruntime for Piper.
"""

from __future__ import annotations

from server.config import Config
from server.engines.base import (
    Engines,
    EngineUnavailable,
    LanguageModel,
    SpeechToText,
    TextToSpeech,
)
from server.engines.core_share import CoreShare


def build_engines(config: Config, cores: CoreShare | None = None) -> Engines:
    """The engines `config` names, constructed but not loaded (call `Engines.load()`).
    `cores`: the node's cores as this worker shares them with the others (none: alone)."""
    cores = cores or CoreShare(None)
    return Engines(
        stt=build_stt(config, cores),
        llm=build_llm(config, cores),
        tts=build_tts(config),
        multilingual_stt=build_multilingual_stt(config, cores),
        preload_multilingual=config.multilingual == "start",
        first_chunk_words=config.first_chunk_words,
    )


def build_stt(config: Config, cores: CoreShare | None = None) -> SpeechToText:
    if config.stt == "faster-whisper":
        from server.engines.faster_whisper_stt import FasterWhisperSTT

        return FasterWhisperSTT(
            beam_size=config.stt_beam_size,
            greedy_first=config.stt_greedy_first,
            cpu_threads=config.stt_threads,
            cores=cores,
            model=config.stt_model,
            cache_dir=config.cache_dir,
            device=config.stt_device,
            compute_type=config.stt_compute_type,
            batch=config.stt_batch,
        )
    raise ValueError(f"unknown STT engine {config.stt!r}")


def build_multilingual_stt(config: Config, cores: CoreShare | None = None) -> SpeechToText | None:
    """Whisper base beside an English-only `HARK_STT_MODEL`; None when the configured
    model is base already, or with HARK_MULTILINGUAL=off."""
    if config.multilingual == "off" or config.stt != "faster-whisper":
        return None
    if config.stt_model == "base":
        return None
    from server.engines.faster_whisper_stt import FasterWhisperSTT

    return FasterWhisperSTT(
        beam_size=config.stt_beam_size,
        greedy_first=config.stt_greedy_first,
        cpu_threads=config.stt_threads,
        cores=cores,
        model="base",
        cache_dir=config.cache_dir,
        device=config.stt_device,
        compute_type=config.stt_compute_type,
        batch=config.stt_batch,
    )


def build_llm(config: Config, cores: CoreShare | None = None) -> LanguageModel:
    if config.llm == "llama-cpp":
        from server.engines.llama_cpp_llm import LlamaCppLLM

        return LlamaCppLLM(
            cache_dir=config.cache_dir,
            threads=config.llm_threads,
            token_threads=config.llm_token_threads,
            slots=config.llm_slots,
            cores=cores,
            max_tokens=config.llm_max_tokens,
            warmup_instructions=config.default_instructions,
        )
    if config.llm == "openai":
        from server.engines.openai_llm import OpenAICompatibleLLM

        return OpenAICompatibleLLM(
            base_url=config.llm_base_url,
            model=config.llm_model,
            api_key=config.llm_api_key,
            max_tokens=config.llm_max_tokens,
            first_token_timeout_s=config.llm_first_token_timeout_s,
            priority=config.llm_priority,
        )
    raise ValueError(f"unknown LLM engine {config.llm!r}")


def build_tts(config: Config) -> TextToSpeech:
    """The configured English TTS; Piper or espeak-ng come with Kokoro's language voices
    beside them unless HARK_MULTILINGUAL=off."""
    if config.tts == "f5":
        return build_f5(config)
    english = build_english_tts(config)
    if config.multilingual == "off":
        return english
    from server.engines.kokoro_tts import KokoroTTS
    from server.engines.language_tts import LanguageTTS

    kokoro = KokoroTTS(cache_dir=config.cache_dir)
    return LanguageTTS(english, kokoro, preload=config.multilingual == "start")


def build_english_tts(config: Config) -> TextToSpeech:
    if config.tts == "piper":
        from server.engines.piper_tts import PiperTTS

        return PiperTTS()
    if config.tts == "espeak":
        from server.engines.espeak_tts import EspeakTTS

        return EspeakTTS(voice=config.espeak_voice)
    raise ValueError(f"unknown TTS engine {config.tts!r}")


def build_f5(config: Config) -> TextToSpeech:
    """F5-TTS from the gpu extra; without it, a message that says how to install it."""
    try:
        from server.engines.f5.synthesis import F5Options
        from server.engines.f5_tts import F5TTS, F5Files
    except ImportError as exc:
        raise EngineUnavailable(
            f"HARK_TTS=f5 needs the gpu extra ({exc.name} is missing): scripts/install.sh gpu"
        ) from exc
    return F5TTS(
        F5Options(
            nfe_steps=config.f5_nfe_steps,
            sway=config.f5_sway,
            cfg_strength=config.f5_cfg_strength,
            speed=config.f5_speed,
            max_chunk_chars=config.f5_max_chunk_chars,
        ),
        F5Files(
            checkpoint=config.f5_checkpoint,
            vocos=config.vocos_path,
            vocab=config.f5_vocab,
            model_config=config.f5_model_config,
            reference_audio=config.f5_ref_audio,
            reference_text=config.f5_ref_text,
        ),
        device=config.f5_device,
        max_batch=config.f5_max_batch,
    )
