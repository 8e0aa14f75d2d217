"""Open the node's store at start-up: the database, its migrations, the writer, and the
services built on them, as one object the composition root holds and closes."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from server.config import Config
from server.engines.base import Engines, LanguageModel
from server.persona.library import PersonaLibrary
from server.store.conversations import ConversationStore
from server.store.database import Database, open_database
from server.store.memory import MemoryService
from server.store.recordings import RecordingStore
from server.store.schema import migrate
from server.store.user_memory import UserMemoryStore
from server.store.voices import VoiceStore
from server.store.writer import HistoryWriter

log = logging.getLogger("hark.store")

# Summaries and notes need more room than a spoken reply.
MEMORY_LLM_MAX_TOKENS = 400


@dataclass
class StoreRoom:
    db: Database
    writer: HistoryWriter
    memory: MemoryService
    recordings: RecordingStore
    voices: VoiceStore

    async def close(self) -> None:
        await self.memory.close()
        await self.recordings.close()
        await self.writer.close()
        await self.db.close()


def memory_llm(config: Config) -> LanguageModel | None:
    """An LLM that can summarize and keep notes: an OpenAI-compatible server (not the
    embedded base model, which only continues a transcript)."""
    if config.llm != "openai" or not config.llm_base_url:
        return None
    from server.engines.openai_llm import OpenAICompatibleLLM

    return OpenAICompatibleLLM(
        base_url=config.llm_base_url,
        model=config.llm_model,
        api_key=config.llm_api_key,
        max_tokens=MEMORY_LLM_MAX_TOKENS,
    )


async def open_store(config: Config, engines: Engines, personas: PersonaLibrary) -> StoreRoom:
    db = await open_database(config.database_url, config.data_dir)
    try:
        version = await migrate(db)
    except BaseException:
        await db.close()
        raise
    where = "PostgreSQL" if db.name == "postgresql" else f"SQLite {config.data_dir}/hark.db"
    log.info("store: %s, schema version %d", where, version)
    writer = HistoryWriter(db)
    writer.start()
    recordings = RecordingStore(
        db, writer, config.data_dir / "recordings", config.recording_retention_days
    )
    recordings.start_sweeper()
    memory = MemoryService(
        ConversationStore(db),
        UserMemoryStore(db),
        writer,
        personas,
        keep_history=config.history,
        memory_tokens=config.memory_tokens,
        llm=memory_llm(config),
        recordings=recordings,
        recording_allowed=config.recording,
    )
    return StoreRoom(
        db=db, writer=writer, memory=memory, recordings=recordings, voices=VoiceStore(db)
    )
