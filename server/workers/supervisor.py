"""The node's worker processes: started, watched, restarted, stopped.

Each worker is `python -m server serve` with `HARK_WORKERS=1` (a complete single-process
Hark) on 127.0.0.1 and a private port, told its index, the node's keys (generated once by
the front, so a token minted by one worker verifies on every other), and where the shared
state is. The supervisor polls each worker's `/healthz` (ready, live calls): a worker is
routed to only while it answers ready. A worker that exits is logged and started again on
the same port (its calls are gone; their ids answer 404), after a back-off if it keeps
dying. Stopping sends SIGTERM to every worker, then SIGKILL to any still running.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

log = logging.getLogger("hark.workers")

POLL_S = 0.5
MAX_MISSES = 3
STOP_TIMEOUT_S = 15.0
# A worker that dies within this long of starting waits longer before each new start.
QUICK_DEATH_S = 10.0
MAX_BACKOFF_S = 30.0
PR_SET_PDEATHSIG = 1


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the front exits, even by SIGKILL (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Worker:
    index: int
    port: int
    process: asyncio.subprocess.Process | None = None
    started_at: float = 0.0
    ready: bool = False
    # From the last /healthz: "starting", "ok" or "error" (with `error`).
    status: str = "starting"
    error: str = ""
    calls: int = 0
    # Offers and WebSocket sessions handed to it whose answer has not come back yet.
    pending: int = 0
    restarts: int = 0
    ready_at: float | None = None
    # /healthz polls in a row that got no answer (a busy worker may miss one or two).
    misses: int = 0
    backoff_s: float = 1.0
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        """Its process runs and has been ready (its calls may be live), even while busy."""
        running = self.process is not None and self.process.returncode is None
        return running and self.ready_at is not None and self.ready_at >= self.started_at

    @property
    def load(self) -> int:
        return self.calls + self.pending

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def summary(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "pid": self.pid,
            "status": self.status,
            "ready": self.ready,
            "calls": self.calls,
            "restarts": self.restarts,
            **({"error": self.error} if self.error else {}),
        }


class Supervisor:
    def __init__(self, count: int, env: dict[str, str], drain_s: float = 0.0) -> None:
        """`env`: the environment every worker shares (keys, state socket, node settings);
        `drain_s`: how long a worker may drain its calls after SIGTERM before SIGKILL."""
        self.env = env
        self.stop_timeout_s = drain_s + STOP_TIMEOUT_S
        self.workers = [Worker(index, free_port()) for index in range(count)]
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._http: aiohttp.ClientSession | None = None
        self.started_at = time.monotonic()

    def worker(self, index: int) -> Worker | None:
        return self.workers[index] if 0 <= index < len(self.workers) else None

    async def start(self) -> None:
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2))
        for worker in self.workers:
            await self._spawn(worker)
            self._tasks.append(asyncio.create_task(self._watch(worker), name=f"w{worker.index}"))
        self._tasks.append(asyncio.create_task(self._poll(), name="workers-health"))

    async def _spawn(self, worker: Worker) -> None:
        env = {
            **self.env,
            "HARK_WORKERS": "1",
            "HARK_WORKER_INDEX": str(worker.index),
            # Its share of the node's cores, for admission by measured CPU.
            "HARK_WORKER_COUNT": str(len(self.workers)),
            "HARK_HOST": "127.0.0.1",
            "HARK_PORT": str(worker.port),
        }
        worker.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "server",
            "serve",
            env=env,
            # Its own session: a terminal's Ctrl-C reaches the front, which stops the
            # workers in order; and the kernel ends a worker whose front died.
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        worker.started_at = time.monotonic()
        worker.ready, worker.status, worker.error, worker.calls = False, "starting", "", 0
        worker.ready_at, worker.misses = None, 0
        log.info("worker %d started (pid %d, port %d)", worker.index, worker.pid, worker.port)

    async def _watch(self, worker: Worker) -> None:
        while True:
            assert worker.process is not None
            code = await worker.process.wait()
            worker.ready, worker.calls = False, 0
            if self._stopping:
                return
            lived = time.monotonic() - worker.started_at
            worker.backoff_s = (
                min(MAX_BACKOFF_S, worker.backoff_s * 2) if lived < QUICK_DEATH_S else 1.0
            )
            log.error(
                "worker %d (pid %s) exited with %s after %.0f s; its calls are gone; "
                "restarting it in %.0f s",
                worker.index,
                worker.pid,
                code,
                lived,
                worker.backoff_s,
            )
            await asyncio.sleep(worker.backoff_s)
            if self._stopping:
                return
            worker.restarts += 1
            await self._spawn(worker)

    async def _poll(self) -> None:
        while True:
            await asyncio.gather(*(self._check(w) for w in self.workers))
            await asyncio.sleep(POLL_S)

    async def _check(self, worker: Worker) -> None:
        if worker.process is None or worker.process.returncode is not None or self._http is None:
            return
        try:
            async with self._http.get(f"{worker.url}/healthz") as resp:
                body = await resp.json()
                ready = resp.status == 200
        except (aiohttp.ClientError, TimeoutError, ValueError):
            worker.misses += 1
            if worker.misses >= MAX_MISSES:
                worker.ready = False
            return
        worker.misses = 0
        if ready and worker.ready_at is None:
            worker.ready_at = time.monotonic()
            log.info(
                "worker %d ready in %.1f s",
                worker.index,
                worker.ready_at - worker.started_at,
            )
        worker.ready = ready
        worker.status = str(body.get("status", "starting"))
        worker.error = str(body.get("error", ""))
        worker.calls = int(body.get("calls", 0))
        worker.detail = {k: v for k, v in body.items() if k not in ("status", "calls", "time")}

    async def stop(self) -> None:
        """SIGTERM to every worker (each drains its calls); SIGKILL to those still running
        after the drain timeout plus STOP_TIMEOUT_S."""
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        running = [w.process for w in self.workers if w.process and w.process.returncode is None]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(
                asyncio.gather(*(p.wait() for p in running)), timeout=self.stop_timeout_s
            )
        except TimeoutError:
            for process in running:
                if process.returncode is None:
                    log.warning("worker pid %d did not stop; killing it", process.pid)
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()
            await asyncio.gather(*(p.wait() for p in running))
        if self._http is not None:
            await self._http.close()
