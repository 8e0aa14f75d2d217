"""The Smart Turn v3.2 weights: taken from the pinned pipecat-ai wheel, checked, cached.

Smart Turn (BSD-2, by Daily) ships as an 8.7 MB ONNX file inside the `pipecat-ai` wheel.
Hark does not depend on pipecat (its runtime pulls a large stack): `scripts/install.sh`
runs `python -m server.turns.smart_turn_model`, which downloads the pinned wheel with
`pip download --no-deps`, takes the one file out of it and keeps it inside the virtual
environment (`share/hark/models`), so it belongs to the install like the models that
come as packages, whatever HARK_CACHE_DIR a container later runs with. A re-run finds
the file, checks its sha256 and does nothing else.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from media.checksum import file_sha256

PACKAGE = "pipecat-ai"
VERSION = "1.14.0"
WHEEL_MEMBER = "pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx"
MODEL_SHA256 = "2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f"
FILE_NAME = "smart-turn-v3.2-cpu.onnx"
FETCH_HINT = "scripts/install.sh (or: python -m server.turns.smart_turn_model)"
# Where the install keeps it: beside the packages of the running environment.
INSTALL_DIR = Path(sys.prefix) / "share" / "hark" / "models"


class SmartTurnModelError(RuntimeError):
    """The Smart Turn model file is missing, altered, or could not be fetched."""


def cached_path(directory: Path | None = None) -> Path:
    return (directory or INSTALL_DIR) / FILE_NAME


def verify(path: Path) -> None:
    """Refuse any file other than the one in pipecat-ai==1.14.0 that Hark was tested with."""
    if not path.is_file():
        raise SmartTurnModelError(
            f"{path} is missing: the Smart Turn model comes from {PACKAGE}=={VERSION}; "
            f"fetch it with {FETCH_HINT}"
        )
    digest = file_sha256(path)
    if digest != MODEL_SHA256:
        raise SmartTurnModelError(
            f"{path} has sha256 {digest}, expected {MODEL_SHA256} from {PACKAGE}=={VERSION}; "
            f"delete it and fetch it again with {FETCH_HINT}"
        )


def model_path(directory: Path | None = None) -> Path:
    """The checked model file, which must have been fetched already (never downloads)."""
    path = cached_path(directory)
    verify(path)
    return path


def fetch(directory: Path | None = None, *, quiet: bool = False) -> Path:
    """The checked model file, downloading the pinned wheel first if it is not there."""
    target = cached_path(directory)
    if target.is_file() and file_sha256(target) == MODEL_SHA256:
        return target
    if not quiet:
        print(f"fetching Smart Turn v3.2 from {PACKAGE}=={VERSION} (12 MB wheel)", file=sys.stderr)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="hark-smart-turn-") as scratch:
        wheel = _download_wheel(Path(scratch))
        partial = target.with_suffix(".part")
        try:
            with zipfile.ZipFile(wheel) as archive, archive.open(WHEEL_MEMBER) as src:
                partial.write_bytes(src.read())
        except (KeyError, zipfile.BadZipFile) as exc:
            raise SmartTurnModelError(f"{wheel.name} holds no {WHEEL_MEMBER}: {exc}") from exc
        verify(partial)
        os.replace(partial, target)
    return target


def _download_wheel(into: Path) -> Path:
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--no-deps",
        "--only-binary",
        ":all:",
        "--disable-pip-version-check",
        "--dest",
        str(into),
        f"{PACKAGE}=={VERSION}",
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    wheels = sorted(into.glob("pipecat_ai-*.whl"))
    if done.returncode != 0 or not wheels:
        detail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise SmartTurnModelError(
            f"could not download {PACKAGE}=={VERSION} for the Smart Turn model: "
            + " / ".join(detail)
        )
    return wheels[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=INSTALL_DIR, help=f"default: {INSTALL_DIR}")
    args = parser.parse_args(argv)
    try:
        path = fetch(args.dir)
    except SmartTurnModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
