"""The HTTP face of Hark, shaped like OpenAI's Realtime WebRTC API.

POST   /v1/realtime/client_secrets   API key → {"value": "ek_…", "expires_at", "session"}
POST   /v1/realtime/calls            SDP offer (raw or multipart) → 201 + answer SDP
POST   /v1/realtime?model=…          the beta path, same as /calls
GET    /v1/realtime?model=…          a call over a WebSocket (signaling/realtime_ws.py)
DELETE /v1/realtime/calls/{call_id}  hang up, 204, idempotent
POST   /v1/realtime/calls/{call_id}/hangup   the same, as current OpenAI SDKs hang up
POST   /hark/demo/client_secret      the local demo page's secret (loopback only)
GET    /healthz                      200 once engines are loaded, 503 while starting or
                                     draining (SIGTERM)

Opening a call passes, in order: credentials (signature, expiry, scope, revocation), rate
limits (per key, per address), the offer's checks, admission (node capacity, calls per
sub and per key), then the secret's single use is claimed, so a refused offer or a full
node does not burn the client's secret.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import web

from server.calls.manager import CallManager, new_call_id
from server.calls.runtime import NodeRuntime
from server.cluster.registry import CallRegistry
from server.config import Config
from server.persona.library import PersonaLibrary
from server.protocol.session_config import MAX_MODEL_CHARS, SessionConfig, SessionConfigError
from server.protocol.tenancy import tenant_of
from server.turns.options import server_turn_detection
from signaling.auth import Authenticator, Caller
from signaling.errors import ApiError
from signaling.rate_limits import RateLimiter
from signaling.sdp import read_offer

T = TypeVar("T")

log = logging.getLogger("hark.http")

# Session fields a client secret fixes: the offer's own session may not change them.
FIXED_BY_SECRET = ("conversation", "persona", "recording")


def check_fixed(secret: dict[str, Any], fixed: SessionConfig, session: SessionConfig) -> None:
    """The offer's own session may not change what the client secret fixed."""
    for name in FIXED_BY_SECRET:
        if name in secret and getattr(session, name) != getattr(fixed, name):
            raise ApiError(
                400,
                "invalid_session",
                f"session.{name} was fixed by the client secret and cannot be changed",
                param=f"session.{name}",
            )


def _session_config(base: SessionConfig, raw: Any, param: str = "session") -> SessionConfig:
    try:
        return base.apply(raw)
    except SessionConfigError as exc:
        raise ApiError(400, "invalid_session", str(exc), param=exc.param) from exc


class RealtimeHttpApi:
    def __init__(
        self,
        config: Config,
        auth: Authenticator,
        runtime: NodeRuntime,
        rate: RateLimiter | None = None,
        registry: CallRegistry | None = None,
        personas: PersonaLibrary | None = None,
    ) -> None:
        self.config = config
        self.auth = auth
        self.rate = rate
        self.registry = registry
        # The live calls appear once engines have loaded; calls get 503 until then.
        self.runtime = runtime
        self.personas = personas or PersonaLibrary({})
        # Sessions that name no persona: HARK_INSTRUCTIONS, or HARK_PERSONA's defaults.
        self.plain_session = SessionConfig(
            instructions=config.default_instructions,
            turn_detection=server_turn_detection(config),
        )
        self.base_session = self.configure(self.plain_session, {"persona": config.persona or None})

    def configure(self, base: SessionConfig, raw: Any, param: str = "session") -> SessionConfig:
        """`raw` (a session dict) applied to `base`, over the defaults of the persona it
        names (or `base`'s persona, e.g. HARK_PERSONA)."""
        if not (isinstance(raw, dict) and "persona" in raw):
            return _session_config(base, raw, param)
        persona_id = raw["persona"] if isinstance(raw["persona"], str) else None
        if persona_id is None and base.persona is not None:
            base = self.plain_session  # persona: null drops the default persona
        elif persona_id is not None and persona_id != base.persona:
            persona = self.personas.get(persona_id)
            if persona is None:
                known = ", ".join(p.id for p in self.personas.all()) or "none"
                raise ApiError(
                    400,
                    "unknown_persona",
                    f"No persona '{persona_id[:64]}' (personas: {known})",
                    param="session.persona",
                )
            base = persona.session(base)
        return _session_config(base, raw, param)

    def register(self, app: web.Application) -> None:
        r = app.router
        r.add_post("/v1/realtime/client_secrets", self.client_secrets)
        r.add_post("/v1/realtime/calls", self.create_call)
        r.add_post("/v1/realtime", self.create_call)
        r.add_delete("/v1/realtime/calls/{call_id}", self.hangup)
        r.add_post("/v1/realtime/calls/{call_id}/hangup", self.hangup)
        r.add_post("/hark/demo/client_secret", self.demo_client_secret)
        r.add_get("/healthz", self.healthz)

    # ---- client secrets ------------------------------------------------------------------

    async def _json_body(self, request: web.Request) -> dict[str, Any]:
        raw = await request.read()
        if not raw:  # no body at all: the defaults (whitespace is not JSON: 400)
            return {}
        if request.content_type not in ("application/json", "text/plain", ""):
            raise ApiError(415, "unsupported_media_type", "Send the body as application/json")
        try:
            body = json.loads(raw)
        except ValueError as exc:
            raise ApiError(400, "invalid_json", f"The body is not valid JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise ApiError(400, "invalid_json", "The body must be a JSON object")
        return body

    async def _rate(self, action: str, who: str, limit: int) -> None:
        if self.rate is not None:
            await self.rate.hit(action, who, limit)

    async def _rate_address(self, request: web.Request) -> None:
        await self._rate("address", request.remote or "unknown", self.config.rate_per_address)

    async def _mint(self, body: dict[str, Any], azp: str | None = None) -> dict[str, Any]:
        session = self.configure(self.base_session, body.get("session", {}))
        ttl = self.config.client_secret_ttl_s
        expires_after = body.get("expires_after")
        if expires_after is not None:
            if not isinstance(expires_after, dict):
                raise ApiError(
                    400, "invalid_value", "expires_after must be an object", param="expires_after"
                )
            if expires_after.get("anchor", "created_at") != "created_at":
                raise ApiError(
                    400,
                    "invalid_value",
                    "expires_after.anchor must be 'created_at'",
                    param="expires_after.anchor",
                )
            seconds = expires_after.get("seconds", ttl)
            if isinstance(seconds, float) and seconds.is_integer():
                seconds = int(seconds)  # JSON Schema counts 60.0 as an integer
            limit = self.config.client_secret_max_ttl_s
            if (
                isinstance(seconds, bool)
                or not isinstance(seconds, int)
                or not (10 <= seconds <= limit)
            ):
                raise ApiError(
                    400,
                    "invalid_value",
                    f"expires_after.seconds must be an integer in [10, {limit}]",
                    param="expires_after.seconds",
                )
            ttl = seconds
        # `user` is accepted as an alias of `sub`; both are checked (found by schemathesis).
        for name in ("sub", "user"):
            if name not in body:
                continue
            value = body[name]
            if not isinstance(value, str) or len(value) > 256:
                raise ApiError(
                    400,
                    "invalid_value",
                    f"{name} must be a string of at most 256 chars",
                    param=name,
                )
        sub = body.get("sub", body.get("user"))
        if session.conversation or session.persona or session.recording:
            memory = self.runtime.require_memory()
            await memory.check_session(tenant_of(azp), sub, session)
        raw_session = body.get("session", {})
        value, expires_at = self.auth.secrets.mint(
            raw_session if isinstance(raw_session, dict) else {}, ttl, sub, azp=azp
        )
        return {
            "value": value,
            "expires_at": expires_at,
            "session": session.to_dict("sess_" + value[-12:], expires_at),
        }

    async def client_secrets(self, request: web.Request) -> web.Response:
        caller = self.auth.require_api_key(request)
        await self._rate("mint", caller.principal, self.config.rate_mint_per_key)
        await self._rate_address(request)
        body = await self._json_body(request)
        return web.json_response(await self._mint(body, azp=caller.key))

    async def demo_client_secret(self, request: web.Request) -> web.Response:
        if not self.config.demo_page:
            raise ApiError(
                404,
                "demo_disabled",
                "The demo page is off (on by default only on loopback; HARK_DEMO=1)",
            )
        origin = request.headers.get("Origin")
        if origin is not None and origin.split("://", 1)[-1] != request.host:
            raise ApiError(403, "cross_origin_demo", "The demo secret is only for this page")
        await self._rate_address(request)
        return web.json_response(await self._mint({}))

    # ---- calls ---------------------------------------------------------------------------

    async def _read_offer(
        self, request: web.Request, session: SessionConfig
    ) -> tuple[str, SessionConfig]:
        offer, fields = await read_offer(request)
        if fields is not None:
            try:
                session = self.configure(session, fields)
            except ValueError as exc:  # a value the checks let through but cannot use
                if isinstance(exc, SessionConfigError):
                    raise
                raise ApiError(
                    400, "invalid_session", f"'session' is not usable: {exc}"[:300], param="session"
                ) from exc
        return offer, session

    async def create_call(self, request: web.Request) -> web.Response:
        caller = self.auth.require_caller(request)
        await self._rate("calls", caller.key or caller.principal, self.config.rate_calls_per_key)
        await self._rate_address(request)
        session = self.session_for(caller, request)
        calls = self.runtime.admit_call()  # 503 while starting or full, before the offer
        fixed = session
        offer, session = await self._read_offer(request, session)
        check_fixed(caller.session, fixed, session)
        call_id, context, session = await self.remember(caller, session, "webrtc")

        async def create() -> tuple[str, str]:
            created = await calls.create(
                offer, session, caller.principal, caller.key, call_id=call_id, context=context
            )
            await self._started(context, call_id)
            return created

        call_id, answer = await self.open_call(caller, calls, create)
        return web.Response(
            status=201,
            text=answer,
            content_type="application/sdp",
            headers={"Location": f"/v1/realtime/calls/{call_id}"},
        )

    async def remember(
        self, caller: Caller, session: SessionConfig, transport: str
    ) -> tuple[str, Any, SessionConfig]:
        """The new call's id and what it remembers (its conversation, persona, recording),
        with the session those settle (server.store.memory)."""
        call_id = new_call_id(transport)
        memory = self.runtime.require_memory()
        context = await memory.open_call(tenant_of(caller.key), caller.sub, session, call_id)
        session = dataclasses.replace(
            session,
            conversation=context.conversation_id,
            instructions=context.instructions or session.instructions,
            recording=context.recorder is not None,
        )
        return call_id, context, session

    def session_for(self, caller: Caller, request: web.Request) -> SessionConfig:
        """The new call's session: the server's defaults (or its persona's), the secret's,
        then `?model=` and `?intent=transcription` (a transcription session, as OpenAI's
        WebSocket URL says)."""
        session = self.configure(self.base_session, caller.session)
        model = request.query.get("model")
        if model:
            session = _session_config(session, {"model": model[:MAX_MODEL_CHARS]})
        intent = request.query.get("intent")
        if intent is not None:
            if intent != "transcription":
                raise ApiError(
                    400, "invalid_value", "intent must be 'transcription'", param="intent"
                )
            session = _session_config(session, {"type": "transcription"}, "intent")
        return session

    async def open_call(
        self,
        caller: Caller,
        calls: CallManager,
        create: Callable[[], Awaitable[tuple[str, T]]],
    ) -> tuple[str, T]:
        """Admission (node capacity, calls per sub and key), the secret's single use, then
        `create` (→ call id, result); a refusal or a failure gives the slot back."""
        registry = self.registry
        ticket = (
            await registry.admit(caller, registry.registered_here) if registry is not None else None
        )
        try:
            await self.auth.consume(caller)
            call_id, result = await create()
        except BaseException:
            if registry is not None and ticket is not None:
                await registry.release(ticket)
            raise
        if registry is not None and ticket is not None:
            created = calls.get(call_id)
            if created is None:
                await registry.release(ticket)
            else:
                registry.add(created, caller, ticket)
        return call_id, result

    async def _started(self, context: Any, call_id: str) -> None:
        """Write the call's conversation before answering; a call whose conversation
        cannot be written is hung up (its client would be told a dangling id)."""
        try:
            await self.runtime.require_memory().started(context, call_id)
        except BaseException:
            log.exception("call %s: its conversation could not be written", call_id)
            calls = self.runtime.calls
            if calls is not None:
                await calls.hangup(call_id)
            raise

    async def hangup(self, request: web.Request) -> web.Response:
        caller = self.auth.require_caller(request, allow_expired=True)
        call_id = request.match_info["call_id"]
        calls = self.runtime.require_calls()
        if not calls.is_known(call_id):
            raise ApiError(404, "call_not_found", f"No call with id '{call_id[:64]}'")
        if caller.kind != "api_key" and calls.owner(call_id) != caller.principal:
            raise ApiError(404, "call_not_found", f"No call with id '{call_id[:64]}'")
        await calls.hangup(call_id)
        return web.Response(status=204)

    # ---- health --------------------------------------------------------------------------

    async def healthz(self, request: web.Request) -> web.Response:
        readiness = self.runtime.readiness
        body: dict[str, Any] = {
            "status": readiness.status,
            "calls": self.runtime.live_calls,
            "time": int(time.time()),
            **readiness.detail,
        }
        if readiness.error:
            body["error"] = readiness.error
        return web.json_response(body, status=200 if readiness.accepting else 503)
