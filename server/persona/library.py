"""The personas directory (`HARK_PERSONAS_DIR`): every `*.toml` file there, read and
checked once at start-up.

A file that cannot be used stops the server before it accepts calls, with the file and
the field named (`personas/ava.toml: voice: must be a string`), never a call failing
later. The file's name (without `.toml`) is the persona's id, what clients put in
`session.persona`.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from string import Template
from typing import Any

from server.persona.persona import DEFAULT_MEMORY_INSTRUCTIONS, PLACEHOLDERS, Persona
from server.protocol.session_config import SessionConfig, SessionConfigError

PERSONA_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
MAX_TEXT = 16_000
FIELDS = {
    "name",
    "description",
    "instructions",
    "voice",
    "language",
    "greeting",
    "greeting_resumed",
    "turn_detection",
    "tools",
    "memory",
}


class PersonaError(ValueError):
    """A persona file Hark cannot use; the message names the file and the field."""


def _fail(path: Path, field: str, problem: str) -> PersonaError:
    return PersonaError(f"{path}: {field}: {problem}")


def _text(path: Path, raw: dict[str, Any], key: str, *, required: bool = False) -> str | None:
    value = raw.get(key)
    if value is None:
        if required:
            raise _fail(path, key, "is required")
        return None
    if not isinstance(value, str) or not value.strip():
        raise _fail(path, key, "must be a non-empty string")
    if len(value) > MAX_TEXT:
        raise _fail(path, key, f"is longer than {MAX_TEXT} characters")
    return value.strip()


def _template(path: Path, key: str, text: str | None) -> None:
    if text is None:
        return
    template = Template(text)
    if not template.is_valid():
        raise _fail(path, key, "has a '$' that is not a placeholder (write '$$' for a dollar)")
    unknown = sorted(set(template.get_identifiers()) - set(PLACEHOLDERS))
    if unknown:
        raise _fail(
            path,
            key,
            f"unknown placeholder ${unknown[0]}; use one of "
            + ", ".join(f"${p}" for p in PLACEHOLDERS),
        )


def _tools(path: Path, raw: Any) -> tuple[dict[str, Any], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise _fail(path, "tools", "must be a list of function tools ([[tools]] tables)")
    for index, tool in enumerate(raw):
        where = f"tools[{index}]"
        if not isinstance(tool, dict) or tool.get("type", "function") != "function":
            raise _fail(path, where, "must be a table with type = 'function'")
        if not isinstance(tool.get("name"), str) or not re.fullmatch(
            r"[A-Za-z0-9_-]{1,64}", tool["name"]
        ):
            raise _fail(path, f"{where}.name", "must be 1-64 letters, digits, _ or -")
        if "parameters" in tool and not isinstance(tool["parameters"], dict):
            raise _fail(path, f"{where}.parameters", "must be a table (a JSON Schema)")
    return tuple({"type": "function", **tool} for tool in raw)


def load_persona(path: Path) -> Persona:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise PersonaError(f"{path}: cannot be read: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise PersonaError(f"{path}: is not valid TOML: {exc}") from exc
    persona_id = path.stem
    if not PERSONA_ID.fullmatch(persona_id):
        raise PersonaError(f"{path}: the file name must be a lowercase id (letters, digits, _ -)")
    for key in raw:
        if key not in FIELDS:
            raise _fail(path, key, f"is not a persona field (known: {', '.join(sorted(FIELDS))})")
    name = _text(path, raw, "name", required=True)
    instructions = _text(path, raw, "instructions", required=True)
    for key in ("instructions", "greeting", "greeting_resumed"):
        _template(path, key, _text(path, raw, key))
    memory = raw.get("memory", {})
    if not isinstance(memory, dict):
        raise _fail(path, "memory", "must be a table ([memory])")
    update = memory.get("update", False)
    if not isinstance(update, bool):
        raise _fail(path, "memory.update", "must be true or false")
    memory_instructions = _text(path, memory, "instructions") or DEFAULT_MEMORY_INSTRUCTIONS
    turn = raw.get("turn_detection")
    if turn is not None and not isinstance(turn, dict):
        raise _fail(path, "turn_detection", "must be a table ([turn_detection])")
    persona = Persona(
        id=persona_id,
        name=str(name),
        instructions=str(instructions),
        voice=_text(path, raw, "voice"),
        language=_text(path, raw, "language") or "en",
        greeting=_text(path, raw, "greeting"),
        greeting_resumed=_text(path, raw, "greeting_resumed"),
        description=_text(path, raw, "description") or "",
        turn_detection=turn,
        tools=_tools(path, raw.get("tools")),
        update_memory=update,
        memory_instructions=memory_instructions,
    )
    try:
        persona.session(SessionConfig())  # the session fields it sets must be valid
    except SessionConfigError as exc:
        field = exc.param.removeprefix("session.audio.input.").removeprefix("session.")
        raise _fail(path, field.replace("audio.output.voice", "voice"), str(exc)) from exc
    return persona


class PersonaLibrary:
    def __init__(self, personas: dict[str, Persona], directory: Path | None = None) -> None:
        self._personas = personas
        self.directory = directory

    @classmethod
    def load(cls, directory: Path) -> PersonaLibrary:
        """Every persona in `directory`; a missing directory is an empty library."""
        directory = Path(directory)
        if not directory.exists():
            return cls({}, directory)
        if not directory.is_dir():
            raise PersonaError(f"{directory}: HARK_PERSONAS_DIR is not a directory")
        personas = {}
        for path in sorted(directory.glob("*.toml")):
            persona = load_persona(path)
            personas[persona.id] = persona
        return cls(personas, directory)

    def get(self, persona_id: str) -> Persona | None:
        return self._personas.get(persona_id)

    def __contains__(self, persona_id: object) -> bool:
        return persona_id in self._personas

    def all(self) -> list[Persona]:
        return list(self._personas.values())
