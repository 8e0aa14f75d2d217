"""The live calls of this node: create from an SDP offer or for a WebSocket, look up, hang
up, close all.

A call that fails while negotiating is closed before the error reaches the client, so a
bad offer never leaves a peer connection behind. Ended calls are remembered for a while so
that hanging up twice answers 204 both times. Each call remembers its tenant (the API key
accountable for it), the only key besides an operator that may join it as a sideband.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Literal

from aiortc.exceptions import OperationError

from media.vad import SileroModel
from server.call.language import check_languages
from server.call.ports import CallControlError
from server.call.session import RealtimeSession
from server.config import Config
from server.engines.base import Engines
from server.engines.voices import PROFILE_PREFIX, VoiceError, VoiceResolver, check_voice
from server.errors import InvalidInput
from server.protocol.session_config import SessionConfig
from server.protocol.tenancy import tenant_of
from server.store.memory import CallContext
from server.turns.smart_turn import SmartTurn

log = logging.getLogger("hark.calls")

MAX_REMEMBERED_ENDED = 10_000


class NegotiationError(InvalidInput):
    """aiortc refused the offer (malformed or unsupported SDP)."""

    def __init__(self, reason: str) -> None:
        super().__init__("invalid_sdp", f"The SDP offer was refused: {reason}")


def new_call_id(transport: str = "webrtc") -> str:
    return ("ws_" if transport == "websocket" else "rtc_") + secrets.token_hex(12)


class CallManager:
    def __init__(
        self,
        config: Config,
        engines: Engines,
        vad_model: SileroModel,
        voices: VoiceResolver | None = None,
        smart_turn: SmartTurn | None = None,
    ) -> None:
        """`voices`: where stored voice profiles (`voice_…`) are looked up, per tenant;
        `smart_turn`: the end-of-turn model, loaded when HARK_END_OF_TURN=smart_turn."""
        self._smart_turn = smart_turn
        self._config = config
        self._engines = engines
        self._vad_model = vad_model
        self._voices = voices
        self._calls: dict[str, RealtimeSession] = {}
        self._owners: dict[str, str] = {}
        self._tenants: dict[str, str | None] = {}
        self._ended: OrderedDict[str, str] = OrderedDict()
        # Other views of the calls (registry, operator monitor, metrics) hook in here.
        self.on_call_started: list[Callable[[RealtimeSession], None]] = []
        self.on_call_ended: list[Callable[[RealtimeSession], None]] = []
        self._announced: set[str] = set()

    def __len__(self) -> int:
        return len(self._calls)

    def live(self) -> Iterator[RealtimeSession]:
        return iter(list(self._calls.values()))

    def get(self, call_id: str) -> RealtimeSession | None:
        return self._calls.get(call_id)

    def owner(self, call_id: str) -> str | None:
        return self._owners.get(call_id) or self._ended.get(call_id)

    def is_known(self, call_id: str) -> bool:
        return call_id in self._calls or call_id in self._ended

    def tenant_of(self, call_id: str) -> str | None:
        """The API key (principal) accountable for a live call, if known."""
        return self._tenants.get(call_id)

    def _new_session(
        self,
        session_config: SessionConfig,
        owner: str,
        tenant: str | None,
        transport: Literal["webrtc", "websocket"],
        *,
        call_id: str | None = None,
        context: CallContext | None = None,
    ) -> RealtimeSession:
        voice = session_config.voice
        try:
            check_voice(self._engines.tts, voice)
        except VoiceError as exc:
            raise InvalidInput(exc.code, exc.message, param="session.audio.output.voice") from exc
        if voice.startswith(PROFILE_PREFIX) and self._voices is None:
            raise InvalidInput(
                "voice_not_found",
                f"No voice profile {voice[:64]!r}: this server has no voice store",
                param="session.audio.output.voice",
            )
        try:
            check_languages(self._engines, session_config)
        except CallControlError as exc:
            raise InvalidInput(exc.code, exc.message, param=exc.param) from exc
        call_id = call_id or new_call_id(transport)
        session = RealtimeSession(
            call_id,
            self._engines,
            self._vad_model,
            session_config,
            max_event_bytes=self._config.max_event_bytes,
            ice_timeout_s=self._config.ice_timeout_s,
            echo_guard=self._config.echo_guard,
            on_closed=self._forget,
            transport=transport,
            append_burst_s=self._config.append_burst_s,
            context=context,
            tenant=tenant_of(tenant),
            voices=self._voices,
            smart_turn=self._smart_turn,
        )
        self._calls[call_id] = session
        self._owners[call_id] = owner
        self._tenants[call_id] = tenant
        return session

    async def create(
        self,
        offer_sdp: str,
        session_config: SessionConfig,
        owner: str,
        tenant: str | None = None,
        *,
        call_id: str | None = None,
        context: CallContext | None = None,
    ) -> tuple[str, str]:
        """Returns (call_id, answer SDP). `context`: the conversation the call belongs to
        and what it remembers (server.store.memory)."""
        session = self._new_session(
            session_config, owner, tenant, "webrtc", call_id=call_id, context=context
        )
        call_id = session.call_id
        try:
            answer = await session.negotiate(offer_sdp)
        # AttributeError, OperationError ("Failed to set remote audio description send
        # parameters"): aiortc trips on some malformed offers (found by the fuzz tests).
        except (
            ValueError,
            KeyError,
            IndexError,
            TypeError,
            AssertionError,
            AttributeError,
            OperationError,
        ) as exc:
            await session.close("bad_offer")
            raise NegotiationError(str(exc) or type(exc).__name__) from exc
        except BaseException:
            await session.close("negotiation_failed")
            raise
        log.info("call %s created (%d live)", call_id, len(self._calls))
        self._announced.add(call_id)
        self._notify(self.on_call_started, session)
        return call_id, answer

    def create_websocket(
        self,
        session_config: SessionConfig,
        owner: str,
        tenant: str | None = None,
        *,
        call_id: str | None = None,
        context: CallContext | None = None,
    ) -> RealtimeSession:
        """A call whose events and audio travel over a WebSocket (opened by the caller)."""
        session = self._new_session(
            session_config, owner, tenant, "websocket", call_id=call_id, context=context
        )
        log.info("call %s created over a WebSocket (%d live)", session.call_id, len(self._calls))
        self._announced.add(session.call_id)
        self._notify(self.on_call_started, session)
        return session

    async def hangup(self, call_id: str) -> None:
        session = self._calls.get(call_id)
        if session is not None:
            await session.close("hangup")

    async def close_all(self) -> None:
        await asyncio.gather(
            *(session.close("server_shutdown") for session in list(self._calls.values())),
            return_exceptions=True,
        )

    def _notify(
        self, hooks: list[Callable[[RealtimeSession], None]], session: RealtimeSession
    ) -> None:
        for hook in hooks:
            try:
                hook(session)
            except Exception:
                log.exception("call %s hook %r failed", session.call_id, hook)

    def _forget(self, session: RealtimeSession) -> None:
        self._calls.pop(session.call_id, None)
        owner = self._owners.pop(session.call_id, "")
        self._tenants.pop(session.call_id, None)
        self._ended[session.call_id] = owner
        while len(self._ended) > MAX_REMEMBERED_ENDED:
            self._ended.popitem(last=False)
        log.info("call %s ended (%d live)", session.call_id, len(self._calls))
        if session.call_id in self._announced:
            self._announced.discard(session.call_id)
            self._notify(self.on_call_ended, session)
