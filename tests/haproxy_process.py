"""Start a real HAProxy (Debian's `haproxy`) in front of Hark nodes, for tests.

The config is the shipped `deploy/haproxy.cfg` with its `bind` and `server` lines replaced
by a free port and the test's nodes, so the tests exercise the settings users deploy
(health check, retries, header stripping). `scripts/test.sh` installs the package.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.server_process import free_port, stop_process

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "deploy" / "haproxy.cfg"


@dataclass
class Balancer:
    url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def render(port: int, backends: dict[str, int]) -> str:
    """The shipped config, listening on `port`, balancing over `backends` (name → port)."""
    text = SHIPPED.read_text()
    text, binds = re.subn(r"(?m)^(\s+)bind \S+$", rf"\g<1>bind 127.0.0.1:{port}", text)
    assert binds == 1, "deploy/haproxy.cfg: expected one bind line"
    servers = [line for line in text.splitlines() if line.strip().startswith("server ")]
    assert servers, "deploy/haproxy.cfg: expected server lines"
    indent = servers[0][: len(servers[0]) - len(servers[0].lstrip())]
    ours = "\n".join(f"{indent}server {name} 127.0.0.1:{p}" for name, p in backends.items())
    text = text.replace("\n".join(servers), ours)
    return text


@contextlib.contextmanager
def running_haproxy(backends: dict[str, int]) -> Iterator[Balancer]:
    binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="hark-haproxy-") as workdir:
        config = Path(workdir) / "haproxy.cfg"
        config.write_text(render(port, backends))
        log_path = Path(workdir) / "haproxy.log"
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                [binary, "-db", "-f", str(config)],
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
            balancer = Balancer(f"http://127.0.0.1:{port}", log_path)
            try:
                deadline = time.monotonic() + 10
                while True:
                    with contextlib.suppress(OSError):
                        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                        break
                    if process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"haproxy did not start:\n{balancer.log()}")
                    time.sleep(0.05)
                yield balancer
            finally:
                stop_process(process, timeout=5)
