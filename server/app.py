"""The aiohttp application: routes, static pages, and model loading at start-up.

The HTTP server answers at once (`/healthz` says 503 "starting") while the models are
assembled, loaded and warmed up in the background, with a progress line per step. Calls
are accepted once everything is loaded, so the first turn of the first call is as fast as
any other.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from media.vad import SileroModel
from server.call_log import CallLog
from server.call_monitor import CallMonitor
from server.call_registry import CallRegistry
from server.call_watchdog import CallWatchdog
from server.calls import CallManager
from server.config import Config
from server.engines.base import Engines
from server.prometheus_metrics import HarkMetrics
from server.session import RealtimeSession
from server.shared_state import open_shared_state
from signaling.access_log import access_log_middleware
from signaling.auth import Authenticator
from signaling.client_secrets import ClientSecrets
from signaling.cors import cors_middleware
from signaling.errors import ApiError, error_middleware
from signaling.http_api import RealtimeHttpApi
from signaling.operator_api import OperatorApi
from signaling.rate_limits import RateLimiter
from signaling.token_ledger import TokenLedger
from signaling.trust_api import TrustHttpApi

log = logging.getLogger("hark.app")

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

CONFIG_KEY = web.AppKey("config", Config)
STATE_KEY = web.AppKey("state", dict)


@dataclass
class Readiness:
    ready: bool = False
    error: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


async def load_engines(engines: Engines, readiness: Readiness) -> SileroModel:
    """Load every model once, in order, logging progress; raises on the first failure."""
    started = time.monotonic()
    total = 1 + len(engines.stages())

    async def step(index: int, label: str, load: Awaitable[Any]) -> Any:
        log.info("[%d/%d] loading %s…", index, total, label)
        readiness.detail["loading"] = label
        step_start = time.monotonic()
        result = await load
        log.info("[%d/%d] %s ready in %.1f s", index, total, label, time.monotonic() - step_start)
        return result

    vad = await step(1, "VAD (Silero, onnxruntime)", asyncio.to_thread(SileroModel.load))
    for index, (label, engine) in enumerate(engines.stages(), start=2):
        await step(index, label, engine.load())
    readiness.detail.pop("loading", None)
    readiness.detail["engines"] = {
        "stt": engines.stt.name,
        "llm": engines.llm.name,
        "tts": engines.tts.name,
    }
    log.info("all models loaded in %.1f s", time.monotonic() - started)
    return vad


def create_app(config: Config, engines: Engines) -> web.Application:
    app = web.Application(
        middlewares=[
            access_log_middleware,
            cors_middleware(config.cors_origins),
            error_middleware,
        ],
        client_max_size=config.max_body_bytes,
    )
    readiness = Readiness()
    state: dict[str, Any] = {"readiness": readiness}
    app[CONFIG_KEY] = config
    app[STATE_KEY] = state
    shared = open_shared_state(config.redis_url)
    ledger = TokenLedger(shared, config.jwt_leeway_s)
    secrets = ClientSecrets(config.key_ring(), config.jwt_leeway_s)
    auth = Authenticator(config.api_keys, secrets, config.admin_keys, ledger)
    registry = CallRegistry(
        shared,
        config.node_id,
        ttl_s=config.registry_ttl_s,
        max_calls=config.max_calls,
        max_per_key=config.max_calls_per_key,
        max_per_sub=config.max_calls_per_sub,
    )
    api = RealtimeHttpApi(config, auth, state, readiness, RateLimiter(shared), registry)
    api.register(app)
    TrustHttpApi(config, auth, ledger, registry, state, api._json_body).register(app)
    monitor = CallMonitor(HarkMetrics(), interval_s=config.quality_interval_s)
    state["monitor"] = monitor
    operator_api = OperatorApi(auth, monitor, state)
    operator_api.register(app)
    _register_static(app)
    call_log = CallLog(transcripts=config.log_transcripts)

    def start_calls(calls: CallManager) -> None:
        def connected(session: RealtimeSession) -> None:
            registry.set_state(session.call_id, "connected")
            call_log.connected(session)

        async def end_revoked(sub: str) -> int:
            return await registry.end_calls_of(sub, calls)

        registry.attach(calls)
        call_log.attach(calls)
        ledger.on_revoked(end_revoked)
        watchdog = CallWatchdog(
            calls,
            max_duration_s=config.max_call_duration_s,
            idle_timeout_s=config.idle_timeout_s,
            ice_timeout_s=config.ice_timeout_s,
            on_connected=connected,
        )
        watchdog.start()
        state["watchdog"] = watchdog

    async def start_loading(app: web.Application) -> None:
        monitor.start()
        try:
            await ledger.start()
        except ApiError as exc:
            readiness.error = f"shared state ({shared.name}) unavailable: {exc.__cause__ or exc}"
            log.error("%s", readiness.error)
            return
        log.info("shared state: %s; node %s", shared.name, config.node_id)

        async def load() -> None:
            try:
                vad = await load_engines(engines, readiness)
            except Exception as exc:
                readiness.error = f"{type(exc).__name__}: {exc}"
                log.error("model loading failed: %s", readiness.error)
                return
            calls = CallManager(config, engines, vad)
            monitor.attach(calls)
            start_calls(calls)
            state["calls"] = calls
            readiness.ready = True
            ready_event = state.get("on_ready")
            if ready_event is not None:
                ready_event()

        state["loader"] = asyncio.create_task(load(), name="load-engines")

    async def shutdown(app: web.Application) -> None:
        loader = state.get("loader")
        if loader is not None:
            loader.cancel()
        operator_api.close_streams()
        await monitor.stop()
        watchdog = state.get("watchdog")
        if watchdog is not None:
            await watchdog.close()
        calls = state.get("calls")
        if calls is not None:
            await calls.close_all()
        await registry.close()
        await shared.close()

    app.on_startup.append(start_loading)
    app.on_shutdown.append(shutdown)
    return app


def _register_static(app: web.Application) -> None:
    index = STATIC_DIR / "index.html"

    async def page(request: web.Request) -> web.FileResponse:
        return web.FileResponse(index, headers={"Cache-Control": "no-cache"})

    async def operator_page(request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC_DIR / "operator.html", headers={"Cache-Control": "no-cache"})

    app.router.add_get("/", page)
    app.router.add_get("/operator", operator_page)
    app.router.add_static("/static/", STATIC_DIR, append_version=False)
