#!/usr/bin/env bash
# One command: install everything the tests need (Debian's chromium and espeak-ng, the
# Python test and gpu extras: torch's CUDA build, ~7 GB, for the F5 tests), lint, and run
# the whole suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

apt_install chromium espeak-ng redis-server postgresql haproxy
command -v npm >/dev/null 2>&1 || apt_install nodejs npm
scripts/install.sh test,gpu
# OpenAI's Agents SDK for Realtime (pinned by its lock file) for the cross-origin page test.
page=tests/agents_page
stamp="$page/node_modules/.hark-$(sha256sum "$page/package-lock.json" | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  log "npm ci in $page (@openai/agents-realtime)"
  (cd "$page" && npm ci --no-audit --no-fund --loglevel=error)
  touch "$stamp"
fi
export HF_HUB_OFFLINE=1

log "ruff check"
.venv/bin/ruff check .
log "ruff format --check"
.venv/bin/ruff format --check .
log "pytest"
exec .venv/bin/python -m pytest "$@"
