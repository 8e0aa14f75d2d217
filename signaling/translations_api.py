"""OpenAI's Realtime Translation API: live interpretation over a WebSocket or WebRTC.

POST   /v1/realtime/translations/client_secrets   API key → a `translation` secret
GET    /v1/realtime/translations?model=…           WebSocket: base64 24 kHz PCM16 in,
                                                   `session.*` events and audio out
POST   /v1/realtime/translations/calls            SDP offer → 201 + answer; events on
                                                   `oai-events`, speech on the audio track
DELETE /v1/realtime/translations/calls/{id}       end it, 204
GET    /v1/operator/translations[/{id}]            the operator's view (languages, latency)

Secrets are scoped: a translation secret opens only translation sessions (any number
until it expires, as OpenAI's), and a realtime secret is refused here. A target language
no translator reaches is refused at creation (HTTP 400) and at `session.update` (`error`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import Callable, Coroutine
from typing import Any

from aiohttp import WSMsgType, web

from media.outbound import OutboundAudioTrack
from media.wire_audio import WireFormat
from server.call.appended_audio import AppendedAudio
from server.call.ports import CallControlError
from server.call.socket_writer import CLOSE_NORMAL, CLOSE_POLICY, SocketWriter
from server.call.transport import WebRtcTransport
from server.config import Config
from server.translation.outputs import EventAudioOut, TrackAudioOut
from server.translation.registry import TranslationSessions
from server.translation.session import AudioOut, TranslationSession
from server.translation.settings import MAX_MODEL_CHARS, TranslationSettings
from signaling.auth import Authenticator, Caller, bearer_token, websocket_token
from signaling.errors import ApiError
from signaling.rate_limits import RateLimiter
from signaling.sdp import read_offer

log = logging.getLogger("hark.translation")

INPUT_FORMAT = WireFormat("pcm16", 24_000)
HEARTBEAT_S = 20.0
HARD_FRAME_FACTOR = 4
MAX_QUEUED_BYTES = 8 * 1024 * 1024


def new_session_id() -> str:
    return "sess_" + secrets.token_hex(12)


class TranslationsApi:
    def __init__(
        self,
        config: Config,
        auth: Authenticator,
        sessions: TranslationSessions,
        rate: RateLimiter | None,
        json_body: Any,
    ) -> None:
        self.config = config
        self.auth = auth
        self.sessions = sessions
        self.rate = rate
        self._json_body = json_body
        self._closing: set[asyncio.Task[None]] = set()

    def register(self, app: web.Application) -> None:
        r = app.router
        r.add_post("/v1/realtime/translations/client_secrets", self.client_secrets)
        r.add_get("/v1/realtime/translations", self.connect)
        r.add_post("/v1/realtime/translations/calls", self.create_call)
        r.add_delete("/v1/realtime/translations/calls/{session_id}", self.hangup)
        r.add_get("/v1/operator/translations", self.operator_list)
        r.add_get("/v1/operator/translations/{session_id}", self.operator_timeline)

    # ---- settings ----------------------------------------------------------------------

    def _settings(self, raw: Any, *, model: str | None = None) -> TranslationSettings:
        """A new session's settings (400 if invalid), its target checked against the
        translators (400 naming the pairs)."""
        interpreter, _ = self.sessions.require()
        settings = TranslationSettings().apply(raw, creating=True)
        if model:
            settings = settings.apply({"model": model[:MAX_MODEL_CHARS]}, creating=True)
        interpreter.capabilities.check_target(settings.target, "session.audio.output.language")
        return settings

    async def _rate(self, action: str, who: str, limit: int) -> None:
        if self.rate is not None:
            await self.rate.hit(action, who, limit)

    async def _admit(self, request: web.Request, caller: Caller) -> None:
        """Rate limits, and this node's capacity (HARK_MAX_CALLS translation sessions)."""
        if len(self.sessions.live()) >= self.config.max_calls:
            raise ApiError(
                503,
                "node_full",
                f"This node already interprets {self.config.max_calls} sessions; retry later "
                "or on another node",
                type="server_error",
                headers={"Retry-After": "5"},
            )
        who = caller.key or caller.principal
        await self._rate("calls", who, self.config.rate_calls_per_key)
        await self._rate("address", request.remote or "unknown", self.config.rate_per_address)

    # ---- client secrets ------------------------------------------------------------------

    async def client_secrets(self, request: web.Request) -> web.Response:
        caller = self.auth.require_api_key(request)
        await self._rate("mint", caller.principal, self.config.rate_mint_per_key)
        body = await self._json_body(request)
        raw = body.get("session")
        if not isinstance(raw, dict):
            raise ApiError(
                400, "missing_session", "session is required: {model, audio}", param="session"
            )
        settings = self._settings(raw)
        ttl = _ttl(body.get("expires_after"), self.config)
        value, expires_at = self.auth.secrets.mint(
            raw,
            ttl,
            body.get("sub") if isinstance(body.get("sub"), str) else None,
            scope="translation",
            azp=caller.key,
        )
        return web.json_response(
            {
                "value": value,
                "expires_at": expires_at,
                "session": settings.to_dict("sess_" + value[-12:], expires_at),
            }
        )

    # ---- the WebSocket -----------------------------------------------------------------

    async def connect(self, request: web.Request) -> web.StreamResponse:
        caller = self.auth.require_translator(websocket_token(request))
        await self._admit(request, caller)
        settings = self._settings(caller.session, model=request.query.get("model"))
        socket = web.WebSocketResponse(
            protocols=("realtime",),
            heartbeat=HEARTBEAT_S,
            compress=False,
            max_msg_size=HARD_FRAME_FACTOR * self.config.max_event_bytes,
        )
        if not socket.can_prepare(request).ok:
            raise ApiError(
                426,
                "websocket_upgrade_required",
                "GET /v1/realtime/translations opens a WebSocket: send the upgrade headers",
                headers={"Upgrade": "websocket"},
            )
        await socket.prepare(request)
        session_id = new_session_id()
        writer = SocketWriter(
            socket,
            name=session_id,
            max_bytes=MAX_QUEUED_BYTES,
            on_overflow=lambda: self._spawn(socket.close(code=CLOSE_POLICY)),
        )
        writer.start()
        session = self._open(
            caller,
            session_id,
            settings,
            send=lambda payload: writer.send(json.dumps(payload)),
            audio_out=EventAudioOut(writer.send),
            transport="websocket",
        )
        self._limit(session, lambda: socket.close(code=CLOSE_NORMAL, message=b"max duration"))
        appended = AppendedAudio(session.on_frame, burst_s=self.config.append_burst_s)
        feeding: asyncio.Task[None] | None = None

        def append(audio: str) -> None:
            nonlocal feeding
            appended.append(audio, INPUT_FORMAT)
            if appended.waiting and (feeding is None or feeding.done()):
                feeding = asyncio.create_task(appended.feed(), name=f"{session_id}-audio-in")

        session.created()
        log.info(
            "translation %s opened over a WebSocket → %s", session_id, settings.output_language
        )
        try:
            async for message in socket:
                if message.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                    continue
                if session.dispatch(message.data, append, self.config.max_event_bytes):
                    if feeding is not None:
                        await feeding
                    await session.finish()
                    break
                if feeding is not None and not feeding.done():
                    await asyncio.shield(feeding)
        finally:
            await session.close()
            await writer.close(CLOSE_NORMAL, "session closed")
        return socket

    # ---- WebRTC ------------------------------------------------------------------------

    async def create_call(self, request: web.Request) -> web.Response:
        caller = self.auth.require_translator(bearer_token(request))
        await self._admit(request, caller)
        raw_session: Any = caller.session
        offer, fields = await read_offer(request)
        if fields is not None:  # the form's `session` over what the secret fixed
            if not isinstance(fields, dict):
                raise ApiError(
                    400, "invalid_session", "'session' must be an object", param="session"
                )
            raw_session = {**raw_session, **fields}
        settings = self._settings(raw_session, model=request.query.get("model"))
        session_id = new_session_id()
        track = OutboundAudioTrack()
        holder: list[TranslationSession] = []

        def on_message(raw: str | bytes) -> None:
            session = holder[0]
            if session.dispatch(raw, _over_track, self.config.max_event_bytes):
                self._later(session.finish(), session)

        transport = WebRtcTransport(
            track,
            name=session_id,
            on_audio=lambda frame, end_ms: holder[0].on_frame(frame, end_ms),
            on_message=on_message,
            on_channel_open=lambda: holder[0].created(),
            on_failed=lambda reason: self._later(None, holder[0]),
        )
        session = self._open(
            caller,
            session_id,
            settings,
            send=lambda payload: transport.send_event(json.dumps(payload)),
            audio_out=TrackAudioOut(track),
            transport="webrtc",
        )
        holder.append(session)
        session.on_closed.append(lambda _: self._later_close(transport))
        try:
            answer = await transport.negotiate(offer)
        except Exception as exc:
            await session.close()
            raise ApiError(400, "invalid_sdp", f"The SDP offer was refused: {exc}"[:300]) from exc
        self._watch_ice(session, transport)
        self._limit(session, session.close)
        return web.Response(
            status=201,
            text=answer,
            content_type="application/sdp",
            headers={"Location": f"/v1/realtime/translations/calls/{session_id}"},
        )

    def _open(
        self,
        caller: Caller,
        session_id: str,
        settings: TranslationSettings,
        *,
        send: Callable[[dict[str, Any]], None],
        audio_out: AudioOut,
        transport: str,
    ) -> TranslationSession:
        """A new session on the node's engines, listed for the operator under `caller`."""
        interpreter, vad = self.sessions.require()
        session = TranslationSession(
            session_id,
            settings,
            interpreter,
            vad,
            expires_at=self._expires_at(caller),
            send=send,
            audio_out=audio_out,
            transport=transport,
        )
        self.sessions.add(session, caller.principal)
        return session

    def _expires_at(self, caller: Caller) -> int:
        """The secret's expiry; an API key's session lasts the longest call allowed."""
        if caller.claims is not None:
            return caller.claims.expires_at
        return int(time.time() + self.config.max_call_duration_s)

    def _spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        """Run `work` in a task the API keeps (and cancels at shutdown)."""
        task = asyncio.create_task(work)
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def _later(self, first: Any, session: TranslationSession) -> None:
        """Finish (if `first`) then close the session."""

        async def run() -> None:
            if first is not None:
                await first
            await session.close()

        self._spawn(run())

    def _later_close(self, transport: WebRtcTransport) -> None:
        self._spawn(transport.close())

    def _watch_ice(self, session: TranslationSession, transport: WebRtcTransport) -> None:
        """A peer that never connects does not leave its session behind."""

        async def watch() -> None:
            await asyncio.sleep(self.config.ice_timeout_s)
            if transport.connection_state != "connected" and not session.closed:
                log.info("translation %s: no connection in time; closed", session.id)
                await session.close()

        self._spawn(watch())

    def _limit(
        self, session: TranslationSession, stop: Callable[[], Coroutine[Any, Any, Any]]
    ) -> None:
        """A session ends after HARK_MAX_CALL_DURATION, as a call does."""

        async def watch() -> None:
            await asyncio.sleep(self.config.max_call_duration_s)
            if not session.closed:
                log.info("translation %s: the longest call allowed is over", session.id)
                await stop()

        self._spawn(watch())

    async def hangup(self, request: web.Request) -> web.Response:
        caller = self.auth.require_translator(bearer_token(request))
        session_id = request.match_info["session_id"]
        owner = self.sessions.owner(session_id)
        if owner is None or (caller.kind != "api_key" and owner != caller.principal):
            raise ApiError(404, "session_not_found", f"No translation session '{session_id[:64]}'")
        session = self.sessions.get(session_id)
        if session is not None:
            await session.close()
        return web.Response(status=204)

    # ---- the operator's view -----------------------------------------------------------

    async def operator_list(self, request: web.Request) -> web.Response:
        self.auth.require_operator(request)
        return web.json_response({"object": "list", "data": self.sessions.summaries()})

    async def operator_timeline(self, request: web.Request) -> web.Response:
        self.auth.require_operator(request)
        return web.json_response(self.sessions.timeline(request.match_info["session_id"]))

    async def close(self) -> None:
        await self.sessions.close_all()
        for task in list(self._closing):
            task.cancel()
            with contextlib.suppress(BaseException):
                await task


def _over_track(audio: str) -> None:
    raise CallControlError(
        "unsupported_over_webrtc",
        "Over WebRTC, source audio comes from the microphone track, not from events",
    )


def _ttl(expires_after: Any, config: Config) -> int:
    if expires_after is None:
        return config.client_secret_ttl_s
    seconds = expires_after.get("seconds") if isinstance(expires_after, dict) else None
    limit = config.client_secret_max_ttl_s
    if isinstance(seconds, bool) or not isinstance(seconds, int) or not 10 <= seconds <= limit:
        raise ApiError(
            400,
            "invalid_value",
            f"expires_after.seconds must be an integer in [10, {limit}]",
            param="expires_after.seconds",
        )
    return seconds
