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
from server.call_monitor import CallMonitor
from server.calls import CallManager
from server.config import Config
from server.engines.base import Engines
from server.prometheus_metrics import HarkMetrics
from signaling.auth import Authenticator
from signaling.client_secrets import ClientSecrets
from signaling.cors import cors_middleware
from signaling.errors import error_middleware
from signaling.http_api import RealtimeHttpApi
from signaling.operator_api import OperatorApi

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
        middlewares=[cors_middleware(config.cors_origins), error_middleware],
        client_max_size=config.max_body_bytes,
    )
    readiness = Readiness()
    state: dict[str, Any] = {"readiness": readiness}
    app[CONFIG_KEY] = config
    app[STATE_KEY] = state
    auth = Authenticator(config.api_keys, ClientSecrets(config.jwt_secret))
    RealtimeHttpApi(config, auth, state, readiness).register(app)
    monitor = CallMonitor(HarkMetrics(), interval_s=config.quality_interval_s)
    state["monitor"] = monitor
    operator_api = OperatorApi(auth, monitor, state)
    operator_api.register(app)
    _register_static(app)

    async def start_loading(app: web.Application) -> None:
        async def load() -> None:
            try:
                vad = await load_engines(engines, readiness)
            except Exception as exc:
                readiness.error = f"{type(exc).__name__}: {exc}"
                log.error("model loading failed: %s", readiness.error)
                return
            calls = CallManager(config, engines, vad)
            monitor.attach(calls)
            state["calls"] = calls
            readiness.ready = True
            ready_event = state.get("on_ready")
            if ready_event is not None:
                ready_event()

        state["loader"] = asyncio.create_task(load(), name="load-engines")
        monitor.start()

    async def shutdown(app: web.Application) -> None:
        loader = state.get("loader")
        if loader is not None:
            loader.cancel()
        operator_api.close_streams()
        await monitor.stop()
        calls = state.get("calls")
        if calls is not None:
            await calls.close_all()

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
