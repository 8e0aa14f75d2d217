"""The node's HTTP front: the public port, in front of the worker processes.

Routes (see `routing.py`): a new call (an SDP offer, a WebSocket session) goes to the
least-loaded ready worker, and to the next one if that worker answers `503 server_full`;
anything about a live call goes to the worker its id names (`404 call_not_found` if that
worker is gone: its calls went with it); `/v1/operator/calls`, `/v1/operator/stream` and
`/metrics` are merged across workers; `/healthz` answers for the node; the rest (client
secrets, pages, voices, conversations, memory, revocations) goes to any ready worker.
The front loads no model and holds no call: it only forwards.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import secrets
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from server.config import Config
from server.engines import core_share
from server.errors import Overloaded
from server.workers.merge import merge_listings, merge_metrics
from server.workers.operator_stream import merged_stream
from server.workers.proxy import Upstream, WorkerProxy
from server.workers.routing import call_id_of, least_loaded, opens_call, owner_of
from server.workers.state_server import StateServer
from server.workers.supervisor import Supervisor, Worker
from signaling.errors import ApiError, error_middleware

log = logging.getLogger("hark.front")

STREAMED = ("/v1/operator/stream", "/v1/recordings/")


def _unavailable(message: str) -> ApiError:
    return ApiError(
        503, "server_starting", message, type="server_error", headers={"Retry-After": "2"}
    )


class Front:
    def __init__(self, config: Config, supervisor: Supervisor, proxy: WorkerProxy) -> None:
        self.config = config
        self.supervisor = supervisor
        self.proxy = proxy
        self._turn = itertools.count()
        self.was_ready = False

    @property
    def workers(self) -> list[Worker]:
        return self.supervisor.workers

    def register(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/healthz", self.healthz)
        r.add_get("/v1/operator/calls", self.operator_calls)
        r.add_get("/v1/operator/stream", self.operator_stream)
        r.add_get("/metrics", self.metrics)
        r.add_route("*", "/{tail:.*}", self.dispatch)

    # ---- choosing a worker ----------------------------------------------------------------

    def any_worker(self) -> Worker:
        ready = [w for w in self.workers if w.ready]
        if not ready:
            raise _unavailable("No worker of this node is ready yet; retry shortly")
        return ready[next(self._turn) % len(ready)]

    def owner(self, call_id: str) -> Worker | None:
        """The worker that owns `call_id`; None for an id no worker made (any answers 404)."""
        index = owner_of(call_id)
        worker = self.supervisor.worker(index) if index is not None else None
        if index is not None and (worker is None or not worker.alive):
            raise ApiError(404, "call_not_found", f"No call with id '{call_id[:64]}'")
        return worker

    def check_room(self) -> None:
        """`HARK_MAX_CALLS` is the node's ceiling, not each worker's: the calls of every
        worker (live, and being created) count against it. Each worker's own measured
        load still refuses earlier (`503 server_full` from the worker)."""
        limit = self.config.max_calls
        if limit and sum(w.load for w in self.workers) >= limit:
            raise Overloaded(
                "server_full",
                f"This node is at its limit of {limit} concurrent calls; retry shortly",
                retry_after_s=5,
            )

    # ---- forwarding ------------------------------------------------------------------------

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        websocket = request.headers.get("Upgrade", "").lower() == "websocket"
        if opens_call(request.method, request.path, websocket) and "call_id" not in request.query:
            if websocket:
                return await self._new_session(request)
            return await self._new_call(request, await request.read())
        call_id = call_id_of(request.path, request.query)
        worker = (self.owner(call_id) if call_id else None) or self.any_worker()
        try:
            if websocket:
                return await self.proxy.websocket(request, worker.url)
            if request.path.startswith(STREAMED):
                return await self.proxy.stream(request, worker.url, None)
            return (await self.proxy.fetch(request, worker.url, None)).response()
        except aiohttp.ClientConnectionError as exc:
            raise _unavailable(f"Worker {worker.index} did not answer; retry shortly") from exc

    async def _new_call(self, request: web.Request, body: bytes) -> web.Response:
        self.check_room()
        tried: set[int] = set()
        refused: Upstream | None = None
        while (worker := least_loaded(self.workers, tried)) is not None:
            tried.add(worker.index)
            worker.pending += 1
            try:
                answer = await self.proxy.fetch(request, worker.url, body)
            except aiohttp.ClientConnectorError as exc:  # never reached it: try another
                log.warning("worker %d refused an offer's connection: %s", worker.index, exc)
                continue
            except aiohttp.ClientConnectionError as exc:  # it may have opened the call
                raise _unavailable(f"Worker {worker.index} failed; retry shortly") from exc
            finally:
                worker.pending -= 1
            if answer.status == 503 and b'"server_full"' in answer.body:
                refused = answer  # this worker is full: the next one may not be
                continue
            if answer.status == 201:
                worker.calls += 1  # until its next /healthz says so itself
            return answer.response()
        if refused is not None:
            return refused.response()
        raise _unavailable("No worker of this node is ready yet; retry shortly")

    async def _new_session(self, request: web.Request) -> web.StreamResponse:
        self.check_room()
        worker = least_loaded(self.workers)
        if worker is None:
            raise _unavailable("No worker of this node is ready yet; retry shortly")
        worker.pending += 1
        counted = True

        def opened() -> None:  # a live call now: its worker's /healthz counts it
            nonlocal counted
            worker.pending -= 1
            worker.calls += 1
            counted = False

        try:
            return await self.proxy.websocket(request, worker.url, opened)
        finally:
            if counted:
                worker.pending -= 1

    # ---- one node's views -------------------------------------------------------------------

    async def _from_every_worker(self, request: web.Request) -> dict[int, Upstream]:
        ready = [w for w in self.workers if w.ready]
        answers = await asyncio.gather(
            *(self.proxy.fetch(request, w.url, b"") for w in ready), return_exceptions=True
        )
        found = {w.index: a for w, a in zip(ready, answers, strict=True) if isinstance(a, Upstream)}
        if not found:
            raise _unavailable("No worker of this node is ready yet; retry shortly")
        return found

    async def operator_calls(self, request: web.Request) -> web.StreamResponse:
        answers = await self._from_every_worker(request)
        refused = next((a for a in answers.values() if a.status != 200), None)
        if refused is not None:
            return refused.response()
        listings = {index: json.loads(a.body)["data"] for index, a in answers.items()}
        return web.json_response({"object": "list", "data": merge_listings(listings)})

    async def metrics(self, request: web.Request) -> web.StreamResponse:
        answers = await self._from_every_worker(request)
        refused = next((a for a in answers.values() if a.status != 200), None)
        if refused is not None:
            return refused.response()
        texts = {index: a.body.decode() for index, a in answers.items()}
        text = merge_metrics(texts) + self._own_metrics()
        content_type = dict(next(iter(answers.values())).headers).get(
            "Content-Type", "text/plain; version=0.0.4; charset=utf-8"
        )
        return web.Response(body=text.encode(), headers={"Content-Type": content_type})

    def _own_metrics(self) -> str:
        lines = [
            "# HELP hark_workers_ready Worker processes of this node answering ready.",
            "# TYPE hark_workers_ready gauge",
            f"hark_workers_ready {sum(w.ready for w in self.workers)}",
            "# HELP hark_worker_restarts_total Worker processes restarted after exiting.",
            "# TYPE hark_worker_restarts_total counter",
        ]
        lines += [
            f'hark_worker_restarts_total{{worker="{w.index}"}} {w.restarts}' for w in self.workers
        ]
        return "\n".join(lines) + "\n"

    async def operator_stream(self, request: web.Request) -> web.StreamResponse:
        ready = [w for w in self.workers if w.ready]
        if not ready:
            raise _unavailable("No worker of this node is ready yet; retry shortly")
        return await merged_stream(request, self.proxy, self.workers)

    async def healthz(self, request: web.Request) -> web.Response:
        """200 once every worker has been ready (then while any is); the workers' states."""
        ready = [w for w in self.workers if w.ready]
        if len(ready) == len(self.workers):
            self.was_ready = True
        failed = next((w for w in self.workers if w.status == "error"), None)
        serving = bool(ready) and self.was_ready
        status = "ok" if serving else ("error" if failed and not self.was_ready else "starting")
        body: dict[str, Any] = {
            "status": status,
            "calls": sum(w.calls for w in self.workers),
            "time": int(time.time()),
            "workers": [w.summary() for w in self.workers],
        }
        if ready:
            body.update({k: v for k, v in ready[0].detail.items() if k == "engines"})
        if failed is not None:
            body["error"] = f"worker {failed.index}: {failed.error}"
        return web.json_response(body, status=200 if serving else 503)


def worker_env(config: Config, state_socket: str, front_token: str) -> dict[str, str]:
    """What every worker shares with the front: the same keys (generated ones included),
    the demo page as the public host decides it, the node's id, the shared state."""
    env = {
        **os.environ,
        "HARK_API_KEYS": ",".join(config.api_keys),
        "HARK_ADMIN_KEYS": ",".join(config.admin_keys),
        "HARK_DEMO": "1" if config.demo_page else "0",
        "HARK_NODE_ID": config.node_id,
        # Other nodes forward a call's requests to the front, which picks the worker.
        "HARK_NODE_URL": config.node_url,
        "HARK_FRONT_TOKEN": front_token,
    }
    if config.jwt_secret:
        env["HARK_JWT_SECRET"] = config.jwt_secret
    if not config.redis_url:
        env["HARK_STATE_SOCKET"] = state_socket
    return env


def serve_front(config: Config, announce: Any) -> int:
    """Runs the front and its `config.workers` workers until SIGTERM or SIGINT."""
    return asyncio.run(_run(config, announce))


async def _run(config: Config, announce: Any) -> int:
    started = time.monotonic()
    folder = tempfile.TemporaryDirectory(prefix="hark-front-")  # mkdtemp: mode 0700
    state = StateServer(str(Path(folder.name) / "state.sock"))
    await state.start()
    front_token = secrets.token_urlsafe(24)
    env = worker_env(config, state.path, front_token)
    env.pop(core_share.ENV, None)
    if config.share_cores:  # the workers split the cores step by step
        cores = Path(folder.name) / "cores"
        core_share.create(cores, config.workers)
        env[core_share.ENV] = str(cores)
    supervisor = Supervisor(config.workers, env, config.drain_timeout_s)
    proxy = WorkerProxy(front_token)
    await proxy.start()
    app = web.Application(middlewares=[error_middleware], client_max_size=4 * config.max_body_bytes)
    front = Front(config, supervisor, proxy)
    front.register(app)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await supervisor.start()
    log.info(
        "front on %s:%d, %d workers, shared state: %s",
        config.host,
        config.port,
        config.workers,
        "redis" if config.redis_url else "front (unix socket)",
    )

    async def wait_ready() -> None:
        while not all(w.ready for w in supervisor.workers):  # noqa: ASYNC110 (polled state)
            await asyncio.sleep(0.2)
        front.was_ready = True
        log.info("all %d workers ready in %.1f s", config.workers, time.monotonic() - started)
        announce()

    waiting = asyncio.create_task(wait_ready())
    try:
        await stop.wait()
    finally:
        log.info("stopping: the workers first, then the front")
        waiting.cancel()
        await supervisor.stop()
        await runner.cleanup()
        await proxy.close()
        await state.close()
        folder.cleanup()
    return 0
