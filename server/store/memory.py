"""A call's memory: the conversation it belongs to, what it starts knowing, where its
finished items go, and what is learned from it afterwards.

`open_call` reads (the conversation to resume, the user's memory, the persona) and
decides: the items to replay, the summary of older turns, the persona's instructions
filled in, the greeting. `started` writes the conversation and the call once the call is
accepted. During the call a `HistoryLog` hands each finished item to the batched writer.
After it, an LLM that can (see `memory_llm`) refreshes the summary and the learner's
notes, in the background.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from server.engines.base import LanguageModel
from server.engines.context_window import fitting
from server.errors import InvalidInput, NotFound
from server.persona.library import PersonaLibrary
from server.persona.persona import Persona, UserMemory
from server.protocol.conversation import new_id
from server.protocol.item_shapes import to_chat
from server.protocol.session_config import SessionConfig
from server.store import memory_llm
from server.store.conversations import (
    ConversationStore,
    call_ended_statement,
    delete_item_statement,
    touch_statement,
    upsert_item_statement,
)
from server.store.user_memory import UserMemoryStore
from server.store.writer import HistoryWriter

log = logging.getLogger("hark.memory")

# A resumed call replays at most this many of its newest items to the client.
MAX_REPLAYED_ITEMS = 200


class RecorderFactory(Protocol):
    def start(self, tenant: str, conversation_id: str, call_id: str) -> Any:
        """A recorder for a call (no I/O until its `begin()`)."""

    async def stop_conversation(self, conversation_id: str) -> None:
        """Finish the live recordings of a conversation about to be deleted."""

    async def erase_files(self, paths: list[str]) -> None: ...


class HistoryLog:
    """One call's finished items, handed to the writer as they come (never blocking)."""

    def __init__(self, writer: HistoryWriter, conversation_id: str, call_id: str) -> None:
        self.writer = writer
        self.conversation_id = conversation_id
        self.call_id = call_id
        self.on_closed: list[Any] = []
        self.closed = False

    def item_done(self, item: dict[str, Any]) -> None:
        now = time.time()
        self.writer.put(
            [
                upsert_item_statement(self.conversation_id, item, self.call_id, now),
                touch_statement(self.conversation_id, now),
            ]
        )

    def item_deleted(self, item_id: str) -> None:
        self.writer.put([delete_item_statement(self.conversation_id, item_id)])

    def close(self, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        self.writer.put([call_ended_statement(self.call_id, reason, time.time())])
        for hook in self.on_closed:
            hook(reason)


@dataclass
class CallContext:
    """What a call starts with; the session reads it, the store fills it."""

    conversation_id: str
    tenant: str
    user: str | None = None
    persona: Persona | None = None
    resumed: bool = False
    earlier: list[dict[str, Any]] = field(default_factory=list)
    summary: str | None = None
    # The persona's instructions filled in with the user's memory (None: the session's).
    instructions: str | None = None
    greeting: str | None = None
    memory_tokens: int = 0
    history: HistoryLog | None = None
    recorder: Any = None
    memory: UserMemory = field(default_factory=UserMemory)


class MemoryService:
    def __init__(
        self,
        conversations: ConversationStore,
        users: UserMemoryStore,
        writer: HistoryWriter,
        personas: PersonaLibrary,
        *,
        keep_history: bool = True,
        memory_tokens: int = 0,
        llm: LanguageModel | None = None,
        recordings: RecorderFactory | None = None,
        recording_allowed: bool = False,
    ) -> None:
        self.conversations = conversations
        self.users = users
        self.writer = writer
        self.personas = personas
        self.keep_history = keep_history
        self.memory_tokens = memory_tokens
        self.llm = llm
        self.recordings = recordings
        self.recording_allowed = recording_allowed
        self._after: set[asyncio.Task[None]] = set()
        self._llm_loaded = False

    def persona(self, persona_id: str | None) -> Persona | None:
        if persona_id is None:
            return None
        persona = self.personas.get(persona_id)
        if persona is None:
            raise InvalidInput(
                "unknown_persona",
                f"No persona '{persona_id[:64]}' (personas: "
                f"{', '.join(p.id for p in self.personas.all()) or 'none'})",
                param="session.persona",
            )
        return persona

    def check_recording(self, session: SessionConfig) -> None:
        if session.recording and not self.recording_allowed:
            raise InvalidInput(
                "recording_disabled",
                "This server does not record calls (HARK_RECORDING is off)",
                param="session.recording",
            )

    async def check_session(self, tenant: str, user: str | None, session: SessionConfig) -> None:
        """What a client secret may name: a persona that exists, recording when allowed,
        a conversation of this tenant (and of this user, if it has one)."""
        self.persona(session.persona)
        self.check_recording(session)
        if session.conversation is not None:
            record = await self.conversations.get(tenant, session.conversation)
            if record.user is not None and record.user != user:
                raise NotFound(
                    "conversation_not_found", f"No conversation with id '{session.conversation}'"
                )

    async def open_call(
        self, tenant: str, user: str | None, session: SessionConfig, call_id: str
    ) -> CallContext:
        """Everything the call `call_id` starts with; reads only (see `started`)."""
        await self.check_session(tenant, user, session)
        persona = self.persona(session.persona)
        memory = await self.users.get(tenant, user) if user else UserMemory()
        context = CallContext(
            conversation_id=session.conversation or new_id("conv"),
            tenant=tenant,
            user=user,
            persona=persona,
            resumed=session.conversation is not None,
            memory_tokens=self.memory_tokens,
            memory=memory,
        )
        if context.resumed:
            record = await self.conversations.get(tenant, context.conversation_id)
            history = await self.conversations.history(context.conversation_id)
            context.earlier = [item for _, item in history[-MAX_REPLAYED_ITEMS:]]
            context.summary = record.summary
        if persona is not None:
            if session.instructions == persona.instructions:  # not replaced by the client
                context.instructions = persona.render_instructions(user, memory, context.summary)
            context.greeting = persona.render_greeting(user, memory, resumed=context.resumed)
        if self.keep_history:
            context.history = HistoryLog(self.writer, context.conversation_id, call_id)
            context.history.on_closed.append(lambda reason: self._after_call(context))
        if session.recording and self.recordings is not None:
            context.recorder = self.recordings.start(tenant, context.conversation_id, call_id)
        return context

    async def started(self, context: CallContext, call_id: str) -> None:
        """The call was accepted: its conversation (if new) and the call are written now,
        so the id the client is told can be read at once."""
        if not context.resumed:
            await self.conversations.create(
                context.tenant,
                user=context.user,
                persona=context.persona.id if context.persona else None,
                conversation_id=context.conversation_id,
            )
        await self.conversations.call_started(call_id, context.conversation_id, context.tenant)
        if context.recorder is not None:
            context.recorder.begin()

    # ---- after a call ----------------------------------------------------------------------

    def _after_call(self, context: CallContext) -> None:
        if self.llm is None:
            return
        task = asyncio.create_task(self.learn(context), name=f"memory-{context.conversation_id}")
        self._after.add(task)
        task.add_done_callback(self._after.discard)

    async def learn(self, context: CallContext) -> None:
        """Refresh the summary of turns past the memory window, and the learner's notes."""
        llm = self.llm
        if llm is None:
            return
        try:
            if not self._llm_loaded:
                await llm.load()  # reachable, and its model named
                self._llm_loaded = True
            await self.writer.flush()
            history = await self.conversations.history(context.conversation_id)
            messages = [(seq, m) for seq, item in history if (m := to_chat(item)) is not None]
            if not messages:
                return
            keep = fitting([m for _, m in messages], self.memory_tokens)
            older = messages[: len(messages) - keep]
            record = await self.conversations.get(None, context.conversation_id)
            through = record.summary_through or 0
            if older and older[-1][0] > through:
                new = [m for seq, m in older if seq > through]
                summary = await memory_llm.summarize(llm, new, record.summary)
                if summary:
                    await self.conversations.set_summary(
                        context.conversation_id, summary, older[-1][0]
                    )
            persona = context.persona
            if persona is not None and persona.update_memory and context.user:
                this_call = [m for _, m in messages[-MAX_REPLAYED_ITEMS:]]
                memory = await self.users.get(context.tenant, context.user)
                updated = await memory_llm.update_notes(llm, persona, memory, this_call)
                if updated is not None:
                    await self.users.put(context.tenant, context.user, updated)
        except NotFound:
            pass  # the conversation was deleted meanwhile
        except Exception:
            log.exception("memory update after call failed (%s)", context.conversation_id)

    async def close(self) -> None:
        for task in list(self._after):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
