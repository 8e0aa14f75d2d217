import os
import sys

# Whisper (CTranslate2) and llama.cpp each bring an OpenMP runtime whose threads spin at
# every barrier; on a small machine where both, the TTS and the media path share the
# cores, a spinning thread waits for one that is not running, and a reply's first token
# took 1.5-3 s instead of 0.1 s (tests/bench/voice_to_voice.py beside other load). Threads
# that sleep at barriers cost a little per token and never collapse. Set before the
# engines load their OpenMP; an operator's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from server.cli import main

sys.exit(main())
