"""The parts of memory that need no call: the memory window, persona files and their
errors, what a client secret may name, and what an LLM does between calls (against
llama.cpp's real OpenAI-compatible server with the packaged model)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from server.config import DEFAULT_PERSONAS_DIR
from server.engines.base import ChatMessage
from server.engines.chat import LLMRequest
from server.engines.context_window import SUMMARY_PREFIX, estimate_tokens, memory_window
from server.engines.openai_llm import OpenAICompatibleLLM
from server.errors import InvalidInput
from server.persona.library import PersonaError, PersonaLibrary, load_persona
from server.persona.persona import UserMemory
from server.protocol.session_config import SessionConfig
from server.store import memory_llm
from server.store.conversations import ConversationStore
from server.store.database import SqliteDatabase
from server.store.memory import CallContext, MemoryService
from server.store.schema import migrate
from server.store.user_memory import UserMemoryStore
from server.store.writer import HistoryWriter
from tests.test_engines_openai_llm import server_url  # noqa: F401 - the real llama.cpp server


def turns(n: int) -> list[ChatMessage]:
    return [
        ChatMessage("user" if i % 2 == 0 else "assistant", f"message number {i} " + "x" * 36)
        for i in range(n)
    ]


def test_the_window_keeps_the_newest_turns_that_fit_after_the_summary():
    history = turns(20)  # each ~14 tokens
    window = memory_window(history, budget=50)
    assert window == history[-3:]
    assert sum(estimate_tokens(m.content) for m in window) <= 50
    assert memory_window(history, budget=0) == history  # 0: no limit
    assert memory_window(history, budget=1) == history[-1:]  # always the turn answered
    summarized = memory_window(history, budget=50, summary="They talked about x.")
    assert summarized[0] == ChatMessage("system", SUMMARY_PREFIX + "They talked about x.")
    assert summarized[1:] == history[-3:]


def test_the_shipped_personas_load_and_fill_their_templates():
    library = PersonaLibrary.load(DEFAULT_PERSONAS_DIR)
    assert {p.id for p in library.all()} >= {"assistant", "ava"}
    ava = library.get("ava")
    assert ava is not None and ava.update_memory and ava.greeting
    session = ava.session(SessionConfig())
    assert session.persona == "ava" and session.turn_detection.eagerness == "low"
    memory = UserMemory({"name": "Bob"}, goals="Past tenses.", notes="Mixes up since/for.")
    text = ava.render_instructions("bob", memory, "They planned a trip.")
    assert "Bob" in text and "Past tenses." in text and "since/for" in text
    assert "They planned a trip." in text and "$" not in text
    assert ava.render_greeting("bob", memory, resumed=True).startswith("Welcome back, Bob")


@pytest.mark.parametrize(
    "body, where",
    [
        ('instructions = "x"\n', "name: is required"),
        ('name = "A"\n', "instructions: is required"),
        ('name = "A"\ninstructions = "x"\ncolour = "red"\n', "colour: is not a persona field"),
        ('name = "A"\ninstructions = "x"\nvoice = 3\n', "voice: must be a non-empty string"),
        ('name = "A"\ninstructions = "Hi $nobody"\n', "instructions: unknown placeholder"),
        ('name = "A"\ninstructions = "x"\ngreeting = "$ 5"\n', "greeting: has a '$'"),
        (
            'name = "A"\ninstructions = "x"\n[turn_detection]\neagerness = "wild"\n',
            "turn_detection.eagerness",
        ),
        (
            'name = "A"\ninstructions = "x"\n[turn_detection]\nthreshold = 7\n',
            "turn_detection.threshold",
        ),
        ('name = "A"\ninstructions = "x"\n[[tools]]\nname = "bad name!"\n', "tools[0].name"),
        ('name = "A"\ninstructions = "x"\n[memory]\nupdate = "yes"\n', "memory.update"),
        ('name = "A"\ninstructions = "x\n', "is not valid TOML"),
    ],
)
def test_a_bad_persona_file_names_the_file_and_field(tmp_path: Path, body: str, where: str):
    path = tmp_path / "tutor.toml"
    path.write_text(body)
    with pytest.raises(PersonaError) as raised:
        load_persona(path)
    assert str(raised.value).startswith(str(path)) and where in str(raised.value)


async def memory_service(tmp_path: Path, **options) -> MemoryService:
    db = await SqliteDatabase.open(tmp_path / "hark.db")
    await migrate(db)
    writer = HistoryWriter(db)
    writer.start()
    return MemoryService(
        ConversationStore(db),
        UserMemoryStore(db),
        writer,
        PersonaLibrary.load(DEFAULT_PERSONAS_DIR),
        **options,
    )


async def test_a_secret_may_name_only_what_the_server_has(tmp_path: Path):
    service = await memory_service(tmp_path)
    await service.check_session("key:a", None, SessionConfig(persona="ava"))
    with pytest.raises(InvalidInput, match="No persona 'pirate'"):
        await service.check_session("key:a", None, SessionConfig(persona="pirate"))
    with pytest.raises(InvalidInput, match="HARK_RECORDING"):
        await service.check_session("key:a", None, SessionConfig(recording=True))
    # A conversation kept for one user is not another user's to continue.
    conv = await service.conversations.create("key:a", user="ann")
    await service.check_session("key:a", "ann", SessionConfig(conversation=conv.id))
    for tenant, user in (("key:a", "bob"), ("key:b", "ann")):
        with pytest.raises(Exception, match="No conversation"):
            await service.check_session(tenant, user, SessionConfig(conversation=conv.id))
    await service.writer.close()
    await service.conversations.db.close()


class FakeNotesLLM:
    """A fake LLM (named as one) that answers with a fixed text, for the parsing rules."""

    name = "fake"

    def __init__(self, answer: str) -> None:
        self.answer = answer

    async def load(self) -> None:
        return None

    async def stream(self, request: LLMRequest) -> AsyncIterator[str]:
        yield self.answer


async def test_notes_change_only_when_the_llm_answers_with_the_json_asked_for():
    ava = PersonaLibrary.load(DEFAULT_PERSONAS_DIR).get("ava")
    assert ava is not None
    before = UserMemory({"name": "Bob"}, "Past tenses.", "Mixes up since/for.")
    talk = [ChatMessage("user", "I have went to Paris."), ChatMessage("assistant", "Nice!")]
    good = FakeNotesLLM('Sure: {"goals": "Past tenses; travel words.", "notes": "went/gone."}')
    after = await memory_llm.update_notes(good, ava, before, talk)
    assert after == UserMemory({"name": "Bob"}, "Past tenses; travel words.", "went/gone.")
    for answer in ("I think Bob did well.", '{"goals": 3}', "{not json}"):
        assert await memory_llm.update_notes(FakeNotesLLM(answer), ava, before, talk) is None


async def test_after_a_call_a_real_llm_summarizes_what_fell_out_of_the_window(
    tmp_path: Path,
    server_url: str,  # noqa: F811
):
    llm = OpenAICompatibleLLM(server_url, model="", max_tokens=60)
    service = await memory_service(tmp_path, memory_tokens=40, llm=llm)
    items = [
        {"role": "user", "content": "I am planning a trip to Lisbon in May."},
        {"role": "assistant", "content": "Lisbon in May is lovely and warm."},
        {"role": "user", "content": "I want to see the old tram and eat pastries."},
        {"role": "assistant", "content": "Tram 28 and pastel de nata, then."},
        {"role": "user", "content": "What should I pack?"},
        {"role": "assistant", "content": "Light clothes and good shoes."},
    ]
    conv = await service.conversations.create("key:a", user="ann", items=items)
    context = CallContext(conversation_id=conv.id, tenant="key:a", user="ann")
    await service.learn(context)
    record = await service.conversations.get("key:a", conv.id)
    assert record.summary and record.summary.strip()
    history = await service.conversations.history(conv.id)
    assert record.summary_through is not None and record.summary_through < history[-1][0]
    # The next call starts with that summary, and the LLM is shown it first.
    ava_less = dataclasses.replace(SessionConfig(), conversation=conv.id)
    start = await service.open_call("key:a", "ann", ava_less, "rtc_next")
    assert start.summary == record.summary and len(start.earlier) == len(items)
    await llm.close()
    await service.writer.close()
    await service.conversations.db.close()
