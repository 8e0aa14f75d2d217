"""Start a real Hark server (`python -m server serve`) in a subprocess for tests.

The server runs exactly as a user starts it, with the real packaged models; the test
talks to it over HTTP and real WebRTC. Its log is kept in a file and shown if it fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 240


@dataclass
class ServerProcess:
    url: str
    api_key: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    # For the operator API (HARK_ADMIN_KEYS); API keys are refused there.
    admin_key: str = ""
    # A second API key: another tenant, whose calls the first key may not touch.
    other_api_key: str = ""

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_process(process: subprocess.Popen[bytes], timeout: float = 15) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `timeout` seconds."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _health(url: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=2) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


# HARK_TEST_VERBOSE=1: test servers log at debug level (to read a rare e2e failure by)
VERBOSE = ["-v"] if os.environ.get("HARK_TEST_VERBOSE") else []


@contextlib.contextmanager
def running_server(env: dict[str, str] | None = None) -> Iterator[ServerProcess]:
    port = free_port()
    api_key = "sk-test-" + secrets.token_hex(8)
    admin_key = "sk-admin-test-" + secrets.token_hex(8)
    other_api_key = "sk-other-test-" + secrets.token_hex(8)
    full_env = {
        **os.environ,
        "HARK_HOST": "127.0.0.1",
        "HARK_PORT": str(port),
        "HARK_API_KEYS": f"{api_key},{other_api_key}",
        "HARK_ADMIN_KEYS": admin_key,
        "HF_HUB_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
        # Stopping a test server ends its calls at once (a drain test sets its own).
        "HARK_DRAIN_TIMEOUT_S": "0",
        # One process, as the tests expect, unless a test asks for a front and workers.
        "HARK_WORKERS": "1",
        # No interpreter models (Whisper base, Marian) unless a test asks for translation.
        "HARK_TRANSLATION": "0",
        # Admission by measured load refuses calls on a busy machine: tests that open
        # calls in bursts are not about it; tests/test_admission_load.py turns it on.
        "HARK_ADMISSION_LOAD": "false",
        **(env or {}),
    }
    data_dir = None
    if not (env or {}).get("HARK_DATA_DIR"):
        # Each server its own store, removed afterwards (a test that reopens one passes
        # its own HARK_DATA_DIR).
        data_dir = tempfile.TemporaryDirectory(prefix="hark-data-")
        full_env["HARK_DATA_DIR"] = data_dir.name
    log_file = tempfile.NamedTemporaryFile(prefix="hark-server-", suffix=".log", delete=False)
    process = subprocess.Popen(
        [sys.executable, "-m", "server", *VERBOSE, "serve"],
        cwd=ROOT,
        env=full_env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    server = ServerProcess(
        f"http://127.0.0.1:{port}",
        api_key,
        port,
        process,
        Path(log_file.name),
        admin_key,
        other_api_key,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"hark server exited with {process.returncode}:\n{server.log()}")
            with contextlib.suppress(OSError):
                status, body = _health(server.url)
                if status == 200:
                    break
                if body.get("status") == "error":
                    raise RuntimeError(f"hark server failed to load: {body}\n{server.log()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"hark server not ready in {START_TIMEOUT_S} s:\n{server.log()}")
            time.sleep(0.3)
        yield server
    finally:
        stop_process(process)
        log_file.close()
        if data_dir is not None:
            data_dir.cleanup()
