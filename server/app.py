"""The composition root: builds the node's parts, wires them together, serves them over HTTP.

The HTTP server answers at once (`/healthz` says 503 "starting") while the models are
assembled, loaded and warmed up in the background, with a progress line per step. Calls
are accepted once everything is loaded, so the first turn of the first call is as fast as
any other. This module (with `cli.py`) is the only place that knows both the domain and
the HTTP face (`signaling`).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from media.vad import SileroModel
from server.call.session import RealtimeSession
from server.calls.admission import AdmissionGuard
from server.calls.drain import Drain
from server.calls.load import LoadMonitor
from server.calls.manager import CallManager
from server.calls.memory_release import IdleMemoryRelease
from server.calls.runtime import NodeRuntime, Readiness
from server.calls.watchdog import CallWatchdog
from server.cluster.nodes import NodeDirectory
from server.cluster.registry import CallRegistry
from server.cluster.shared_state import SharedState
from server.config import Config
from server.engines.base import Engines
from server.engines.language_voices import all_voices
from server.errors import HarkError
from server.ops.call_log import CallLog
from server.ops.monitor import CallMonitor
from server.ops.prometheus import HarkMetrics
from server.persona.library import PersonaLibrary
from server.store.open import StoreRoom, open_store
from server.translation.interpreter import Interpreter
from server.translation.registry import TranslationSessions
from server.turns.smart_turn import SmartTurn
from server.workers.worker_side import shared_state_for, worker_middlewares
from signaling.access_log import access_log_middleware
from signaling.auth import Authenticator
from signaling.client_secrets import ClientSecrets
from signaling.conversations_api import ConversationsApi
from signaling.cors import cors_middleware
from signaling.errors import error_middleware
from signaling.forwarding import CallRouter
from signaling.http_api import RealtimeHttpApi
from signaling.openapi import document
from signaling.operator_api import OperatorApi
from signaling.rate_limits import RateLimiter
from signaling.realtime_ws import RealtimeWebSocketApi
from signaling.recordings_api import RecordingsApi
from signaling.signing_keys import key_ring_for
from signaling.token_ledger import TokenLedger
from signaling.translations_api import TranslationsApi
from signaling.trust_api import TrustHttpApi
from signaling.voices_api import VoicesApi

log = logging.getLogger("hark.app")

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"


@dataclass
class Node:
    """Everything one running Hark node holds, typed (the app's runtime)."""

    config: Config
    engines: Engines
    shared: SharedState
    ledger: TokenLedger
    registry: CallRegistry
    monitor: CallMonitor
    call_log: CallLog
    personas: PersonaLibrary
    directory: NodeDirectory
    drain: Drain
    runtime: NodeRuntime = field(default_factory=NodeRuntime)
    store: StoreRoom | None = None
    translations: TranslationSessions = field(default_factory=TranslationSessions)
    watchdog: CallWatchdog | None = None
    loader: asyncio.Task[None] | None = None
    # Called once when the engines are loaded and calls are accepted (the CLI's banner).
    on_ready: list[Callable[[], None]] = field(default_factory=list)


NODE_KEY = web.AppKey("node", Node)


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
    await engines.prepare_apology()
    readiness.detail.pop("loading", None)
    readiness.detail["engines"] = {
        "stt": engines.stt.name,
        "llm": engines.llm.name,
        "tts": engines.tts.name,
    }
    log.info("all models loaded in %.1f s", time.monotonic() - started)
    return vad


async def load_smart_turn(config: Config) -> SmartTurn | None:
    """Smart Turn v3.2 when HARK_END_OF_TURN=smart_turn asks for it (fetched by install.sh)."""
    if config.end_of_turn != "smart_turn":
        return None
    started = time.monotonic()
    model = await asyncio.to_thread(SmartTurn.installed)
    log.info("end of turn: Smart Turn v3.2 ready in %.1f s", time.monotonic() - started)
    return model


def create_app(
    config: Config, engines: Engines, personas: PersonaLibrary | None = None
) -> web.Application:
    """The node's HTTP app. Raises `PersonaError` for an unusable persona file."""
    if personas is None:
        personas = PersonaLibrary.load(config.personas_dir)
    app = web.Application(
        middlewares=[
            *worker_middlewares(),  # a worker behind the node's front: the client's address
            access_log_middleware,
            cors_middleware(config.cors_origins),
            error_middleware,
        ],
        client_max_size=config.max_body_bytes,
    )
    shared = shared_state_for(config)
    runtime = NodeRuntime()
    directory = NodeDirectory(
        shared,
        config.node_id,
        config.node_url,
        ttl_s=config.registry_ttl_s,
        state=lambda: runtime.readiness.status,
    )
    node = Node(
        config=config,
        engines=engines,
        shared=shared,
        ledger=TokenLedger(shared, config.jwt_leeway_s),
        registry=CallRegistry(
            shared,
            config.node_id,
            ttl_s=config.registry_ttl_s,
            max_calls=config.max_calls,
            max_per_key=config.max_calls_per_key,
            max_per_sub=config.max_calls_per_sub,
        ),
        monitor=CallMonitor(HarkMetrics(), interval_s=config.quality_interval_s),
        call_log=CallLog(transcripts=config.log_transcripts),
        personas=personas,
        directory=directory,
        drain=Drain(
            runtime.readiness,
            lambda: runtime.calls,
            config.drain_timeout_s,
            on_change=directory.changed,
            on_done=_exit_gracefully,
        ),
        runtime=runtime,
    )
    app[NODE_KEY] = node
    router = CallRouter(config.node_id, runtime, node.registry, directory)
    app.middlewares.append(router.middleware)
    secrets = ClientSecrets(key_ring_for(config), config.jwt_leeway_s)
    auth = Authenticator(config.api_keys, secrets, config.admin_keys, node.ledger)
    api = RealtimeHttpApi(
        config, auth, node.runtime, RateLimiter(shared), node.registry, personas=personas
    )
    api.register(app)
    RealtimeWebSocketApi(api, config.node_id).register(app)
    ConversationsApi(auth, node.runtime, api._json_body).register(app)
    RecordingsApi(auth, node.runtime, config.recording_retention_days).register(app)
    VoicesApi(auth, node.runtime, engines.stt, built_in_voices(config)).register(app)
    spec = document(tuple(p.id for p in personas.all()), config.recording)
    TrustHttpApi(
        config, auth, node.ledger, node.registry, node.runtime, api._json_body, spec
    ).register(app)
    translations_api = TranslationsApi(
        config, auth, node.translations, RateLimiter(shared), api._json_body
    )
    translations_api.register(app)
    operator_api = OperatorApi(auth, node.monitor, node.runtime)
    operator_api.register(app)
    _register_static(app)

    async def start(app: web.Application) -> None:
        node.monitor.start()
        try:
            await node.ledger.start()
        except HarkError as exc:
            error = f"shared state ({shared.name}) unavailable: {exc.__cause__ or exc}"
            node.runtime.readiness.error = error
            log.error("%s", error)
            return
        log.info("shared state: %s; node %s at %s", shared.name, config.node_id, config.node_url)
        directory.start()
        try:
            node.store = await open_store(config, engines, personas)
        except Exception as exc:
            node.runtime.readiness.error = f"database unavailable: {exc}"
            log.error("%s", node.runtime.readiness.error)
            return
        node.runtime.memory = node.store.memory
        node.runtime.voices = node.store.voices
        node.runtime.load = load = LoadMonitor.for_node(config)
        load.start()
        node.monitor.metrics.track_load(load.reading)
        node.runtime.admission = AdmissionGuard.for_node(
            config.gpu_memory_limit,
            config.max_engine_queue,
            engines.queue_depths,
            load if config.admission_load else None,
        )
        node.loader = asyncio.create_task(_load_and_open(node), name="load-engines")

    async def shutdown(app: web.Application) -> None:
        if node.loader is not None:
            node.loader.cancel()
        operator_api.close_streams()
        await router.close()
        await translations_api.close()
        await node.monitor.stop()
        if node.runtime.load is not None:
            await node.runtime.load.stop()
        if node.watchdog is not None:
            await node.watchdog.close()
        if node.runtime.calls is not None:
            await node.runtime.calls.close_all()
        if node.store is not None:
            await node.store.close()
        await node.registry.close()
        await directory.close()
        await shared.close()

    app.on_startup.append(start)
    app.on_shutdown.append(shutdown)
    return app


def _exit_gracefully() -> None:
    """The drain is over: leave `web.run_app` the way its own SIGINT handler does."""

    def leave() -> None:
        raise web.GracefulExit()

    asyncio.get_running_loop().call_soon(leave)


async def drain_on_sigterm(app: web.Application) -> None:
    """On startup of a served node (`cli.serve`): SIGTERM drains instead of exiting."""
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, app[NODE_KEY].drain.begin)


async def _load_and_open(node: Node) -> None:
    """Load the engines, then open the node for calls, with every view of them attached."""
    readiness = node.runtime.readiness
    try:
        vad = await load_engines(node.engines, readiness)
    except Exception as exc:
        readiness.error = f"{type(exc).__name__}: {exc}"
        log.error("model loading failed: %s", readiness.error)
        return
    config = node.config
    try:
        smart_turn = await load_smart_turn(config)
    except Exception as exc:  # a missing or altered file: the message names the package
        readiness.error = f"{type(exc).__name__}: {exc}"
        log.error("model loading failed: %s", readiness.error)
        return
    calls = CallManager(
        config, node.engines, vad, voices=node.runtime.voices, smart_turn=smart_turn
    )
    node.monitor.attach(calls)
    node.registry.attach(calls)
    node.call_log.attach(calls)
    IdleMemoryRelease(calls)

    def connected(session: RealtimeSession) -> None:
        node.registry.set_state(session.call_id, "connected")
        node.call_log.connected(session)

    async def end_revoked(sub: str) -> int:
        return await node.registry.end_calls_of(sub, calls)

    node.ledger.on_revoked(end_revoked)
    node.watchdog = CallWatchdog(
        calls,
        max_duration_s=config.max_call_duration_s,
        idle_timeout_s=config.idle_timeout_s,
        ice_timeout_s=config.ice_timeout_s,
        on_connected=connected,
    )
    node.watchdog.start()
    node.runtime.calls = calls
    readiness.ready = True
    node.directory.changed()
    for ready in node.on_ready:
        ready()
    await load_translation(node, vad)


async def load_translation(node: Node, vad: SileroModel) -> None:
    """The interpreter, after the call engines (calls are already accepted): its own
    Whisper and Marian, the node's Piper for English and its LLM where it is remote."""
    config, engines = node.config, node.engines
    if not config.translation:
        node.translations.error = "off on this node (HARK_TRANSLATION=0)"
        return
    interpreter = Interpreter(
        config.cache_dir,
        english_voice=engines.tts if config.tts == "piper" else None,
        llm=engines.llm if config.llm == "openai" else None,
        kokoro_voices=config.translation_voice == "kokoro",
    )
    try:
        await interpreter.load()
    except Exception as exc:
        node.translations.error = f"{type(exc).__name__}: {exc}"
        log.error("translation unavailable: %s", node.translations.error)
        return
    node.translations.ready(interpreter, vad)
    node.runtime.readiness.detail["translation"] = interpreter.capabilities.describe()


def built_in_voices(config: Config) -> dict[str, str]:
    """The voices the configured TTS speaks without a reference, with their language:
    the English one, then Kokoro's (`es-alpha`, …) unless HARK_MULTILINGUAL=off."""
    if config.tts == "espeak":  # espeak-ng's voices are named for their language: en-gb
        voices = {config.espeak_voice: config.espeak_voice.partition("-")[0]}
    else:
        voices = {"joe": "en"}
    if config.multilingual != "off" and config.tts != "f5":
        voices.update({voice.id: voice.language.code for voice in all_voices()})
    return voices


def _register_static(app: web.Application) -> None:
    index = STATIC_DIR / "index.html"

    async def page(request: web.Request) -> web.FileResponse:
        return web.FileResponse(index, headers={"Cache-Control": "no-cache"})

    async def operator_page(request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC_DIR / "operator.html", headers={"Cache-Control": "no-cache"})

    app.router.add_get("/", page)
    app.router.add_get("/operator", operator_page)
    app.router.add_static("/static/", STATIC_DIR, append_version=False)
