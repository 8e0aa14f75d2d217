"""build_engines picks each stage's implementation from the configuration."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pytest

from server.config import Config
from server.engines.base import LanguageModel, SpeechToText, TextToSpeech
from server.engines.espeak_tts import EspeakTTS
from server.engines.factory import build_engines
from server.engines.faster_whisper_stt import FasterWhisperSTT
from server.engines.kokoro_tts import KokoroTTS
from server.engines.language_tts import LanguageTTS
from server.engines.llama_cpp_llm import LlamaCppLLM
from server.engines.openai_llm import OpenAICompatibleLLM
from server.engines.piper_tts import PiperTTS


def test_defaults_are_the_packaged_cpu_engines(tmp_path: Path) -> None:
    config = Config.from_env({"HARK_CACHE_DIR": str(tmp_path), "HARK_LLM_THREADS": "3"})
    engines = build_engines(config)
    assert isinstance(engines.stt, FasterWhisperSTT) and engines.stt.beam_size == 5
    assert not engines.stt.greedy_first
    assert isinstance(engines.llm, LlamaCppLLM)
    assert (engines.llm.cache_dir, engines.llm.threads) == (tmp_path, 3)
    assert isinstance(engines.tts, LanguageTTS) and isinstance(engines.tts.english, PiperTTS)
    assert isinstance(engines.tts.kokoro.engine, KokoroTTS) and not engines.tts.kokoro.loaded
    assert isinstance(engines.multilingual_stt, FasterWhisperSTT)
    assert engines.multilingual_stt.model_name == "base" and not engines.preload_multilingual
    assert isinstance(engines.stt, SpeechToText)
    assert isinstance(engines.llm, LanguageModel)
    assert isinstance(engines.tts, TextToSpeech)
    assert [e.name for e in (engines.stt, engines.llm, engines.tts)] == [
        "faster-whisper",
        "llama-cpp",
        "piper",
    ]


def test_remote_llm_and_espeak(tmp_path: Path) -> None:
    config = Config.from_env(
        {
            "HARK_LLM_BASE_URL": "http://vllm:8000/v1/",
            "HARK_LLM_MODEL": "gemma",
            "HARK_LLM_API_KEY": "secret",
            "HARK_LLM_MAX_TOKENS": "120",
            "HARK_TTS": "espeak",
            "HARK_ESPEAK_VOICE": "en-gb",
            "HARK_STT_BEAM_SIZE": "3",
            "HARK_STT_GREEDY_FIRST": "on",
        }
    )
    engines = build_engines(config)
    assert isinstance(engines.llm, OpenAICompatibleLLM)
    assert engines.llm.base_url == "http://vllm:8000/v1"
    assert (engines.llm.model, engines.llm.api_key, engines.llm.max_tokens) == (
        "gemma",
        "secret",
        120,
    )
    assert isinstance(engines.tts, LanguageTTS) and isinstance(engines.tts.english, EspeakTTS)
    assert engines.tts.english.voice == "en-gb"
    assert isinstance(engines.stt, FasterWhisperSTT) and engines.stt.beam_size == 3
    assert engines.stt.greedy_first


def test_english_only_builds_neither_whisper_base_nor_kokoro() -> None:
    engines = build_engines(Config.from_env({"HARK_MULTILINGUAL": "off"}))
    assert isinstance(engines.tts, PiperTTS) and engines.multilingual_stt is None
    started = build_engines(Config.from_env({"HARK_MULTILINGUAL": "start"}))
    assert started.preload_multilingual
    based = build_engines(Config.from_env({"HARK_STT_MODEL": "base"}))
    assert based.multilingual_stt is None  # the main model hears every language already


def test_unknown_engine_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown TTS engine 'vits'"):
        build_engines(dataclasses.replace(Config(), tts="vits"))


@pytest.mark.slow
async def test_loading_logs_progress_and_prints_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    config = dataclasses.replace(Config(), tts="espeak", llm_threads=2)
    engines = build_engines(config)
    engines.stt = FasterWhisperSTT(beam_size=1)  # the default engines, cheaper to warm up
    with caplog.at_level(logging.INFO, logger="hark.engines"):
        await engines.load()
    messages = [r.getMessage() for r in caplog.records if r.name == "hark.engines"]
    assert any(m.startswith("loading Whisper tiny.en (int8, 2 threads)") for m in messages)
    assert any("ready in" in m for m in messages)
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")


def test_the_default_server_never_imports_torch() -> None:
    """The CPU default stays torch-free even where the gpu extra is installed."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from server.app import create_app\n"
        "from server.calls.admission import AdmissionGuard\n"
        "from server.config import Config\n"
        "from server.engines.factory import build_engines\n"
        "config = Config.from_env({})\n"
        "create_app(config, build_engines(config))\n"
        "AdmissionGuard.for_node(0.9, 32, dict)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'f5_tts', 'vocos')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
        cwd=Path(__file__).resolve().parent.parent,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_f5_is_built_from_its_settings() -> None:
    pytest.importorskip("torch", reason="the gpu extra")
    from server.engines.f5_tts import F5TTS

    config = Config.from_env(
        {
            "HARK_TTS": "f5",
            "HARK_F5_CHECKPOINT": "/models/f5.safetensors",
            "HARK_VOCOS_PATH": "/models/vocos",
            "HARK_F5_NFE_STEPS": "16",
            "HARK_F5_SWAY": "-0.5",
            "HARK_F5_MAX_BATCH": "3",
            "HARK_F5_DEVICE": "cuda",
        }
    )
    tts = build_engines(config).tts
    assert isinstance(tts, F5TTS) and tts.clones_voices
    assert (tts.options.nfe_steps, tts.options.sway, tts.max_batch) == (16, -0.5, 3)
    assert tts.files.checkpoint == Path("/models/f5.safetensors")
    assert (tts.device_name, tts.files.vocos) == ("cuda", Path("/models/vocos"))
