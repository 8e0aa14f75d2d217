"""llama.cpp's own OpenAI-compatible server (`llama_cpp.server`) on the packaged Gemma GGUF,
started for real by tests that need an LLM server: Hark's OpenAI client, engine faults."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from server.config import Config
from server.engines.llama_cpp_llm import assemble_gguf


class LlamaServerError(RuntimeError):
    pass


def start_llama_server(port: int, log: Path) -> subprocess.Popen[bytes]:
    """Start it on 127.0.0.1:`port`, appending its output to `log`; returns once it
    answers `/v1/models`."""
    cache = Path(os.environ.get("HARK_CACHE_DIR") or Config().cache_dir)
    model = assemble_gguf(cache)
    command = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(model),
        "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--n_threads", "2",
        "--use_mlock", "False",
        # The GGUF has no chat template; llama.cpp's fallback (llama-2) makes this base
        # model stop at once, while vicuna's plain "USER:/ASSISTANT:" gets it talking.
        "--chat_format", "vicuna",
        # Else a new request interrupts the running one, hiding whether a closed stream
        # stopped it.
        "--interrupt_requests", "False",
    ]  # fmt: skip
    with log.open("ab") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    wait_until_up(f"http://127.0.0.1:{port}/v1/models", proc, log)
    return proc


def wait_until_up(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise LlamaServerError(f"llama_cpp.server exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:  # refused while it starts; URLError is an OSError
            pass
        time.sleep(0.25)
    raise LlamaServerError(f"llama_cpp.server did not come up: {log.read_text()[-2000:]}")
