"""`GET /v1/realtime`: OpenAI Realtime's WebSocket API, and the sideband of a WebRTC call.

GET /v1/realtime?model=…       a new call whose events and audio (base64) travel over this
                               WebSocket: the server-side clients' transport (OpenAI's
                               Python SDK `client.realtime.connect()`, telephony bridges)
GET /v1/realtime?call_id=rtc_… join a live call as a second event channel (a backend runs
                               tools while the browser holds the audio)

Credentials: `Authorization: Bearer <API key or ek_ secret>`, or for browsers the
subprotocols `realtime` + `openai-insecure-api-key.<key>` (the answer names `realtime`).
A new call passes exactly the checks of `POST /v1/realtime/calls` (credentials, rate
limits, admission, the secret's single use) before the upgrade; every refusal is an HTTP
error with an OpenAI error body, never an upgraded socket that closes at once.

Who may join a call: the API key accountable for it (the key itself, or the key that
minted its client secret), an operator token or the admin key. Anyone else's call, or an
unknown one, is 404. A sideband for a call on another node is relayed to that node by
signaling/forwarding.py before it gets here; only a node that advertises no address
leaves it to this module: 409 `call_on_other_node`, naming the node (also in the
`Hark-Call-Node` header).
"""

from __future__ import annotations

import logging

from aiohttp import WSMsgType, web

from server.call.session import RealtimeSession
from server.call.sideband import MAX_SIDEBANDS, SidebandChannel
from server.call.websocket_transport import WebSocketTransport
from server.cluster.registry import CallRegistry
from server.protocol.session_config import MAX_MODEL_CHARS
from signaling.auth import websocket_token
from signaling.errors import ApiError
from signaling.http_api import RealtimeHttpApi

log = logging.getLogger("hark.ws")

SUBPROTOCOLS = ("realtime", "openai-beta.realtime-v1")
HEARTBEAT_S = 20.0
# Frames between the event cap and this are refused with an `error` event; past it
# (memory), the connection is closed with 1009.
HARD_FRAME_FACTOR = 4
NODE_HEADER = "Hark-Call-Node"


def _not_found(call_id: str) -> ApiError:
    return ApiError(404, "call_not_found", f"No call with id '{call_id[:64]}'")


class RealtimeWebSocketApi:
    def __init__(self, api: RealtimeHttpApi, node_id: str) -> None:
        self.api = api
        self.node_id = node_id

    def register(self, app: web.Application) -> None:
        app.router.add_get("/v1/realtime", self.connect)

    def _socket(self) -> web.WebSocketResponse:
        return web.WebSocketResponse(
            protocols=SUBPROTOCOLS,
            heartbeat=HEARTBEAT_S,
            compress=False,  # base64 audio does not deflate; it would only cost CPU
            max_msg_size=HARD_FRAME_FACTOR * self.api.config.max_event_bytes,
        )

    def _upgradable(self, request: web.Request) -> web.WebSocketResponse:
        socket = self._socket()
        if not socket.can_prepare(request).ok:
            raise ApiError(
                426,
                "websocket_upgrade_required",
                "GET /v1/realtime opens a WebSocket: send the upgrade headers "
                "(or POST an SDP offer to /v1/realtime/calls for WebRTC)",
                headers={"Upgrade": "websocket"},
            )
        return socket

    async def connect(self, request: web.Request) -> web.StreamResponse:
        for name in ("model", "call_id", "intent"):
            if len(request.query.getall(name, [])) > 1:
                raise ApiError(400, "invalid_value", f"'{name}' may be given once", param=name)
        if len(request.query.get("model", "")) > MAX_MODEL_CHARS:
            raise ApiError(
                400,
                "invalid_value",
                f"model is longer than {MAX_MODEL_CHARS} characters",
                param="model",
            )
        call_id = request.query.get("call_id")
        if call_id is not None:
            return await self._sideband(request, call_id)
        return await self._new_call(request)

    # ---- a call over this WebSocket -------------------------------------------------------

    async def _new_call(self, request: web.Request) -> web.StreamResponse:
        api = self.api
        caller = api.auth.require_caller(request, token=websocket_token(request))
        await api._rate("calls", caller.key or caller.principal, api.config.rate_calls_per_key)
        await api._rate_address(request)
        session_config = api.session_for(caller, request)
        calls = api.runtime.admit_call()  # 503 while starting or full
        socket = self._upgradable(request)
        call_id, context, session_config = await api.remember(caller, session_config, "websocket")

        async def create() -> tuple[str, RealtimeSession]:
            session = calls.create_websocket(
                session_config, caller.principal, caller.key, call_id=call_id, context=context
            )
            await api._started(context, call_id)
            return session.call_id, session

        _, session = await api.open_call(caller, calls, create)
        transport = session.transport
        assert isinstance(transport, WebSocketTransport)
        reason = "hangup"
        try:
            await socket.prepare(request)
            transport.open(socket)
            async for message in socket:
                if message.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    await transport.receive(message.data)
                elif message.type == WSMsgType.ERROR:
                    reason = "connection_closed"
                    log.info("call %s: %s", session.call_id, socket.exception())
            if socket.close_code not in (None, 1000, 1001):
                reason = "connection_closed"
        finally:
            await session.close(reason)
        return socket

    # ---- a sideband on a live call ---------------------------------------------------------

    async def _sideband(self, request: web.Request, call_id: str) -> web.StreamResponse:
        api = self.api
        caller = api.auth.require_sideband(websocket_token(request))
        await api._rate_address(request)
        calls = api.runtime.require_calls()
        session = calls.get(call_id)
        may_join = caller.kind != "api_key"  # operators and admins join any call
        if session is None or session.closed:
            await self._elsewhere(call_id, caller.principal if not may_join else None)
            raise _not_found(call_id)
        if not may_join and calls.tenant_of(call_id) != caller.principal:
            raise _not_found(call_id)
        if len(session.sidebands) >= MAX_SIDEBANDS:
            raise ApiError(
                429,
                "sideband_limit",
                f"This call already has {MAX_SIDEBANDS} sidebands; close one first",
                type="rate_limit_error",
            )
        socket = self._upgradable(request)
        await socket.prepare(request)
        channel = SidebandChannel(session, socket, max_event_bytes=api.config.max_event_bytes)
        if session.closed:  # it ended while the upgrade was answered
            await channel.close(session.close_reason)
            return socket
        channel.open()
        log.info("call %s: a sideband joined (%d)", call_id, len(session.sidebands))
        try:
            async for message in socket:
                if message.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    await channel.receive(message.data)
        finally:
            await channel.leave()
        return socket

    async def _elsewhere(self, call_id: str, tenant: str | None) -> None:
        """A call this node does not hold: if another node does (and the caller may join
        it), 409 naming that node; otherwise return (the caller answers 404)."""
        registry: CallRegistry | None = self.api.registry
        if registry is None:
            return
        try:
            record = await registry.locate(call_id)
        except Exception as exc:  # shared state down: this node cannot tell
            log.warning("locating call %s failed: %s", call_id[:64], exc)
            return
        if record is None or not record.get("node") or record["node"] == self.node_id:
            return
        if tenant is not None and record.get("key") != tenant:
            return
        node = record["node"]
        raise ApiError(
            409,
            "call_on_other_node",
            f"Call '{call_id[:64]}' is on node '{node}'; connect to that node "
            f"(route call_id-scoped requests by the {NODE_HEADER} header)",
            param="call_id",
            headers={NODE_HEADER: node},
        )
