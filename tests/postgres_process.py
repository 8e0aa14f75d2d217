"""Start a real PostgreSQL server (Debian's `postgresql` package) for tests.

A throwaway cluster: `initdb` into a temp dir, `postgres` on a free loopback port with
its socket in that dir, trust authentication for the `postgres` user, fsync off (a test
cluster need not survive a power cut). PostgreSQL refuses to run as root, so as root
(CI here) the cluster is made and run as the `postgres` user the package creates.
`scripts/test.sh` installs the package.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tests.server_process import free_port, stop_process


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise RuntimeError(f"PostgreSQL's {name} is missing: apt-get install postgresql")
    return found[-1]


def _as_postgres(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", "postgres", "--", *command]


@contextlib.contextmanager
def running_postgres() -> Iterator[str]:
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="hark-pg-"))
    data = workdir / "data"
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(workdir, user.pw_uid, user.pw_gid)
    process = None
    try:
        subprocess.run(
            _as_postgres(
                [_bin("initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"]
            ),
            check=True,
            capture_output=True,
        )
        with open(os.devnull, "wb") as devnull:
            process = subprocess.Popen(
                _as_postgres(
                    [
                        _bin("postgres"),
                        "-D",
                        str(data),
                        "-p",
                        str(port),
                        "-h",
                        "127.0.0.1",
                        "-k",
                        str(workdir),
                        "-c",
                        "fsync=off",
                        "-c",
                        "full_page_writes=off",
                    ]
                ),
                stdout=devnull,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while True:
            ready = subprocess.run(
                [_bin("pg_isready"), "-h", "127.0.0.1", "-p", str(port)], capture_output=True
            )
            if ready.returncode == 0:
                break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL did not start (exit {process.poll()})")
            time.sleep(0.1)
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        if process is not None:
            subprocess.run(
                _as_postgres([_bin("pg_ctl"), "-D", str(data), "stop", "-m", "immediate"]),
                capture_output=True,
            )
            stop_process(process, timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)
