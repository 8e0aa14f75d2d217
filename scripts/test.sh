#!/usr/bin/env bash
# One command: install everything the tests need (Debian's chromium and espeak-ng, the
# Python test and gpu extras: torch's CUDA build, ~7 GB, for the F5 tests), lint, and run
# the whole suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

apt_install chromium espeak-ng redis-server
scripts/install.sh test,gpu
export HF_HUB_OFFLINE=1

log "ruff check"
.venv/bin/ruff check .
log "ruff format --check"
.venv/bin/ruff format --check .
log "pytest"
exec .venv/bin/python -m pytest "$@"
