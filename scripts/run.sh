#!/usr/bin/env bash
# One command: install Hark (idempotent) and start the server on the embedded defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh
export HF_HUB_OFFLINE=1
exec .venv/bin/python -m server serve "$@"
