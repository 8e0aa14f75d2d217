#!/usr/bin/env bash
# Installs Hark into ./.venv. Idempotent: a second run with an unchanged pyproject.toml
# does no pip work at all, and pip's wheel cache keeps llama-cpp-python's ~6 minute
# source build to the first install on a machine.
#
# Usage: scripts/install.sh [extra,...]     e.g. scripts/install.sh test
#        scripts/install.sh gpu               F5-TTS, torch (CUDA build), NVML: the GPU path
set -euo pipefail
cd "$(dirname "$0")/.."

extras="${1:-}"
. scripts/lib.sh

pick_python() {
  for candidate in "${HARK_PYTHON:-}" python3.11 python3; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
      "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$candidate"
      return
    fi
  done
  echo "Hark needs Python 3.11 or newer (set HARK_PYTHON to its path)" >&2
  exit 1
}

python_bin="$(pick_python)"
if [ ! -x .venv/bin/python ]; then
  if ! "$python_bin" -c 'import ensurepip' 2>/dev/null; then
    apt_install python3-venv
  fi
  log "creating .venv with $python_bin"
  "$python_bin" -m venv .venv
fi

# llama.cpp's default native build uses AMX code that crashes on some server CPUs.
export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON}"
export HF_HUB_OFFLINE=1
export PIP_DISABLE_PIP_VERSION_CHECK=1

hash="$(cat pyproject.toml scripts/install.sh | sha256sum | cut -c1-16)"
stamp=".venv/.hark-installed-$hash-${extras:-core}"
# Any install with this hash covers the core; an install with extras covers those extras.
if [ -f "$stamp" ] || { [ -z "$extras" ] && compgen -G ".venv/.hark-installed-$hash-*" >/dev/null; }; then
  log "dependencies up to date (.venv)"
else
  if ! command -v cc >/dev/null 2>&1 || ! command -v c++ >/dev/null 2>&1; then
    apt_install build-essential
  fi
  log "installing Python packages into .venv (first time: llama-cpp-python compiles, ~6 min)"
  if [[ ",$extras," == *",gpu,"* ]]; then log "… with the gpu extra: torch (CUDA build), ~3 GB to download"; fi
  .venv/bin/python -m pip install -q --upgrade pip
  spec="."
  [ -n "$extras" ] && spec=".[$extras]"
  .venv/bin/python -m pip install -q -e "$spec"
  # silero-vad's metadata requires torch; Hark only reads its ONNX file.
  .venv/bin/python -m pip install -q --no-deps "silero-vad==6.2.3"
  if [[ ",$extras," == *",gpu,"* ]]; then
    # Their metadata pulls training and demo stacks (gradio, wandb, accelerate, datasets);
    # the inference path's own imports are pinned in pyproject's gpu extra.
    log "installing f5-tts and vocos (inference only, --no-deps)"
    .venv/bin/python -m pip install -q --no-deps "f5-tts==1.1.22" "vocos==0.1.0"
  fi
  find .venv -maxdepth 1 -name '.hark-installed-*' ! -name ".hark-installed-$hash-*" -delete
  touch "$stamp"
fi
# Smart Turn v3.2 (HARK_END_OF_TURN=smart_turn): one file taken out of the pinned
# pipecat-ai wheel (pipecat itself is not installed), kept in .venv/share/hark/models;
# once there, a re-run only checks its sha256.
.venv/bin/python -m server.turns.smart_turn_model >/dev/null
