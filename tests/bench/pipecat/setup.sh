#!/usr/bin/env bash
# Creates .bench/pipecat-venv: Pipecat with SmallWebRTC, Silero, faster-whisper, Piper and
# its OpenAI client (for llama.cpp's OpenAI-compatible server). No torch: none of these
# extras pull it. Idempotent: a stamp with the pinned requirement skips a second install.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../../.." && pwd)"
VENV="${PIPECAT_VENV:-$ROOT/.bench/pipecat-venv}"
PYTHON="${PYTHON:-python3}"
# The same engine versions Hark uses, so the comparison is about the pipeline, not the engines.
REQUIREMENTS=(
  "pipecat-ai[webrtc,silero,whisper,piper,openai]==1.14.0"
  "aiortc==1.16.0"
  "faster-whisper==1.2.1"
  "piper-tts==1.8.0"
  "onnxruntime==1.31.1"
)
STAMP="$VENV/.bench-installed"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "${REQUIREMENTS[*]}" ]]; then
  echo "pipecat venv ready: $VENV"
  exit 0
fi
started=$(date +%s)
"$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
"$VENV/bin/pip" install -q "${REQUIREMENTS[@]}"
if "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  echo "warning: torch got installed into $VENV" >&2
fi
echo "${REQUIREMENTS[*]}" > "$STAMP"
echo "pipecat venv installed in $(( $(date +%s) - started )) s: $VENV"
