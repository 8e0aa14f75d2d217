"""This node's translation sessions: the interpreter they share, the live ones, and the
recently ended ones the operator can still open (bounded)."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from media.vad import SileroModel
from server.errors import NotFound, Overloaded
from server.translation.interpreter import Interpreter
from server.translation.session import TranslationSession

MAX_ENDED = 200


class TranslationSessions:
    def __init__(self) -> None:
        self.interpreter: Interpreter | None = None
        self.vad: SileroModel | None = None
        self.error: str | None = None
        self._live: dict[str, TranslationSession] = {}
        self._owners: dict[str, str] = {}
        self._ended: OrderedDict[str, dict[str, Any]] = OrderedDict()

    def ready(self, interpreter: Interpreter, vad: SileroModel) -> None:
        self.interpreter, self.vad = interpreter, vad

    def require(self) -> tuple[Interpreter, SileroModel]:
        """The loaded interpreter and VAD; 503 while they load (or if they failed)."""
        if self.interpreter is None or self.vad is None:
            why = f": {self.error}" if self.error else "; retry in a few seconds"
            raise Overloaded(
                "translation_unavailable",
                f"Translation is not ready on this node{why}",
                retry_after_s=None if self.error else 5.0,
            )
        return self.interpreter, self.vad

    def add(self, session: TranslationSession, owner: str) -> None:
        self._live[session.id] = session
        self._owners[session.id] = owner
        session.on_closed.append(self._ended_now)

    def _ended_now(self, session: TranslationSession) -> None:
        self._live.pop(session.id, None)
        self._ended[session.id] = self._timeline(session)
        while len(self._ended) > MAX_ENDED:
            self._ended.popitem(last=False)

    def get(self, session_id: str) -> TranslationSession | None:
        return self._live.get(session_id)

    def owner(self, session_id: str) -> str | None:
        return self._owners.get(session_id)

    def live(self) -> list[TranslationSession]:
        return list(self._live.values())

    def summaries(self) -> list[dict[str, Any]]:
        ended = [timeline["summary"] for timeline in reversed(self._ended.values())]
        return [session.summary() for session in self._live.values()] + ended

    def timeline(self, session_id: str) -> dict[str, Any]:
        session = self._live.get(session_id)
        if session is not None:
            return self._timeline(session)
        if session_id in self._ended:
            return self._ended[session_id]
        raise NotFound("session_not_found", f"No translation session '{session_id[:64]}'")

    @staticmethod
    def _timeline(session: TranslationSession) -> dict[str, Any]:
        return {"summary": session.summary(), "segments": list(session.stats.segments)}

    async def close_all(self) -> None:
        for session in self.live():
            await session.close()
