"""The OpenAPI description of the memory routes: conversations (OpenAI's Conversations
API shapes), users' memory, recordings and voice profiles. Merged into the served
document by `signaling.openapi.document`; the limits come from the code that checks
them, so the document cannot promise what the server refuses."""

from __future__ import annotations

from typing import Any

from server.protocol.item_shapes import MAX_ID_CHARS, MAX_ITEM_CHARS, ROLES
from server.store.conversations import (
    MAX_ITEMS_PER_REQUEST,
    MAX_LIMIT,
    MAX_METADATA_KEY,
    MAX_METADATA_PAIRS,
    MAX_METADATA_VALUE,
)
from server.store.user_memory import MAX_NOTES_CHARS
from server.store.voices import MAX_NAME_CHARS

ITEM_ID_PATTERN = rf"^[A-Za-z0-9_\-.:]{{1,{MAX_ID_CHARS}}}$"
CONVERSATION_ID_PATTERN = r"^conv_[0-9a-f]{20}$"
RECORDING_ID_PATTERN = r"^rec_[0-9a-f]{20}$"


def _errors(*statuses: str) -> dict[str, Any]:
    from signaling.openapi import ERRORS

    return {status: ERRORS[status] for status in statuses}


ERRORS_READ = ("400", "401", "403", "404", "503")
ERRORS_WRITE = ("400", "401", "403", "404", "413", "415", "503")


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _body(schema: dict[str, Any], required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


def _path(name: str, **schema: Any) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string", **schema}}


def _query(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema}


METADATA = {
    "type": ["object", "null"],
    "maxProperties": MAX_METADATA_PAIRS,
    "propertyNames": {"maxLength": MAX_METADATA_KEY},
    "additionalProperties": {"type": "string", "maxLength": MAX_METADATA_VALUE},
}
TEXT = {"type": "string", "maxLength": MAX_ITEM_CHARS}
# null: the server names the item.
ITEM_ID = {"type": ["string", "null"], "pattern": ITEM_ID_PATTERN}
PART = {
    "oneOf": [
        {
            "type": "object",
            "required": ["type", "text"],
            "properties": {"type": {"enum": ["input_text", "output_text", "text"]}, "text": TEXT},
        },
        {
            "type": "object",
            "required": ["type"],
            "properties": {
                "type": {"enum": ["input_audio", "output_audio"]},
                "transcript": {"type": ["string", "null"], "maxLength": MAX_ITEM_CHARS},
            },
        },
    ]
}
ITEM_IN = {
    "description": "A Realtime item (message, function_call, function_call_output), or the "
    "Responses API's shorthand {role, content: '...'}",
    "oneOf": [
        {
            "type": "object",
            "required": ["role", "content"],
            "properties": {
                "type": {"const": "message"},
                "id": ITEM_ID,
                "role": {"enum": list(ROLES)},
                "content": {"oneOf": [TEXT, {"type": "array", "minItems": 1, "items": PART}]},
            },
        },
        {
            "type": "object",
            "required": ["type", "call_id", "name", "arguments"],
            "properties": {
                "type": {"const": "function_call"},
                "id": ITEM_ID,
                "call_id": {"type": "string", "maxLength": MAX_ID_CHARS},
                "name": {"type": "string", "maxLength": MAX_ID_CHARS},
                "arguments": TEXT,
            },
        },
        {
            "type": "object",
            "required": ["type", "call_id", "output"],
            "properties": {
                "type": {"const": "function_call_output"},
                "id": ITEM_ID,
                "call_id": {"type": "string", "maxLength": MAX_ID_CHARS},
                "output": TEXT,
            },
        },
    ],
}
ITEMS_IN = {"type": "array", "minItems": 1, "maxItems": MAX_ITEMS_PER_REQUEST, "items": ITEM_IN}
ITEM_OUT = {
    "type": "object",
    "required": ["id", "type"],
    "properties": {"id": {"type": "string"}, "type": {"type": "string"}},
}
CONVERSATION = {
    "type": "object",
    "required": ["id", "object", "created_at", "metadata"],
    "properties": {
        "id": {"type": "string"},
        "object": {"const": "conversation"},
        "created_at": {"type": "integer"},
        "metadata": {"type": "object"},
        "hark": {"type": "object", "description": "user, persona, updated_at, items, calls"},
    },
}


def _list(item: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["object", "data"],
        "properties": {
            "object": {"const": "list"},
            "data": {"type": "array", "items": item},
            "first_id": {"type": ["string", "null"]},
            "last_id": {"type": ["string", "null"]},
            "has_more": {"type": "boolean"},
        },
    }


LIMIT = _query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT})
CONVERSATION_ID = _path("conversation_id")
USER_MEMORY = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "profile": METADATA,
        "goals": {"type": "string", "maxLength": MAX_NOTES_CHARS},
        "notes": {"type": "string", "maxLength": MAX_NOTES_CHARS},
    },
}
RECORDING = {
    "type": "object",
    "required": ["id", "object", "status", "duration_ms"],
    "properties": {
        "id": {"type": "string"},
        "object": {"const": "hark.recording"},
        "status": {"enum": ["recording", "complete"]},
        "duration_ms": {"type": "integer"},
        "transcript": {"type": "array", "items": {"type": "object"}},
    },
}
VOICE = {
    "type": "object",
    "required": ["id", "object", "name"],
    "properties": {
        "id": {"type": "string"},
        "object": {"const": "voice"},
        "name": {"type": "string"},
        "created_at": {"type": ["integer", "null"]},
        "duration_ms": {"type": ["integer", "null"]},
    },
}

PATHS: dict[str, Any] = {
    "/v1/conversations": {
        "post": {
            "summary": "Create a conversation with initial items and metadata (API key)",
            "requestBody": _body(
                {
                    "type": "object",
                    "properties": {
                        "metadata": METADATA,
                        "items": {
                            "type": ["array", "null"],
                            "maxItems": MAX_ITEMS_PER_REQUEST,
                            "items": ITEM_IN,
                        },
                    },
                },
                required=False,
            ),
            "responses": {"200": _json(CONVERSATION), **_errors(*ERRORS_WRITE)},
        },
        "get": {
            "summary": "List conversations, newest first (Hark extension; operators: all)",
            "parameters": [
                LIMIT,
                _query("after", {"type": "string", "pattern": CONVERSATION_ID_PATTERN}),
            ],
            "responses": {"200": _json(_list(CONVERSATION)), **_errors(*ERRORS_READ)},
        },
    },
    "/v1/conversations/{conversation_id}": {
        "get": {
            "summary": "A conversation",
            "parameters": [CONVERSATION_ID],
            "responses": {"200": _json(CONVERSATION), **_errors(*ERRORS_READ)},
        },
        "post": {
            "summary": "Replace a conversation's metadata (API key)",
            "parameters": [CONVERSATION_ID],
            "requestBody": _body(
                {"type": "object", "required": ["metadata"], "properties": {"metadata": METADATA}}
            ),
            "responses": {"200": _json(CONVERSATION), **_errors(*ERRORS_WRITE)},
        },
        "delete": {
            "summary": "Delete a conversation, its items and its recordings (API key)",
            "parameters": [CONVERSATION_ID],
            "responses": {
                "200": _json(
                    {
                        "type": "object",
                        "required": ["id", "object", "deleted"],
                        "properties": {"object": {"const": "conversation.deleted"}},
                    }
                ),
                **_errors(*ERRORS_READ),
            },
        },
    },
    "/v1/conversations/{conversation_id}/items": {
        "get": {
            "summary": "A conversation's items as Realtime items (default newest first)",
            "parameters": [
                CONVERSATION_ID,
                LIMIT,
                _query("after", {"type": "string", "pattern": ITEM_ID_PATTERN}),
                _query("order", {"enum": ["asc", "desc"]}),
            ],
            "responses": {"200": _json(_list(ITEM_OUT)), **_errors(*ERRORS_READ)},
        },
        "post": {
            "summary": "Add items to a conversation (API key)",
            "parameters": [CONVERSATION_ID],
            "requestBody": _body(
                {"type": "object", "required": ["items"], "properties": {"items": ITEMS_IN}}
            ),
            "responses": {"200": _json(_list(ITEM_OUT)), **_errors(*ERRORS_WRITE)},
        },
    },
    "/v1/conversations/{conversation_id}/items/{item_id}": {
        "get": {
            "summary": "One item",
            "parameters": [CONVERSATION_ID, _path("item_id")],
            "responses": {"200": _json(ITEM_OUT), **_errors(*ERRORS_READ)},
        },
        "delete": {
            "summary": "Delete an item (API key); returns the conversation",
            "parameters": [CONVERSATION_ID, _path("item_id")],
            "responses": {"200": _json(CONVERSATION), **_errors(*ERRORS_READ)},
        },
    },
    "/hark/users/{user}/memory": {
        "parameters": [_path("user", minLength=1, maxLength=256, pattern=r"^[^/]+$")],
        "get": {
            "summary": "A user's profile, learning goals and progress notes (API key)",
            "responses": {"200": _json({"type": "object"}), **_errors(*ERRORS_READ)},
        },
        "put": {
            "summary": "Replace a user's memory (API key)",
            "requestBody": _body(USER_MEMORY),
            "responses": {"200": _json({"type": "object"}), **_errors(*ERRORS_WRITE)},
        },
        "delete": {
            "summary": "Forget a user's memory (API key)",
            "responses": {"204": {"description": "Forgotten"}, **_errors(*ERRORS_READ)},
        },
    },
    "/v1/recordings": {
        "get": {
            "summary": "The tenant's call recordings, newest first (API key)",
            "parameters": [
                LIMIT,
                _query("after", {"type": "string", "pattern": RECORDING_ID_PATTERN}),
                _query("conversation_id", {"type": "string"}),
            ],
            "responses": {"200": _json(_list(RECORDING)), **_errors(*ERRORS_READ)},
        }
    },
    "/v1/recordings/{recording_id}": {
        "get": {
            "summary": "A recording: status, length, channels, the transcript's timings",
            "parameters": [_path("recording_id")],
            "responses": {"200": _json(RECORDING), **_errors(*ERRORS_READ)},
        },
        "delete": {
            "summary": "Delete a recording and erase its file",
            "parameters": [_path("recording_id")],
            "responses": {"204": {"description": "Deleted"}, **_errors(*ERRORS_READ)},
        },
    },
    "/v1/recordings/{recording_id}/audio": {
        "get": {
            "summary": "The recording: stereo Ogg Opus, caller left, assistant right",
            "parameters": [_path("recording_id")],
            "responses": {
                "200": {
                    "description": "The file",
                    "content": {"audio/ogg": {"schema": {"type": "string", "format": "binary"}}},
                },
                **_errors(*ERRORS_READ),
            },
        }
    },
    "/v1/voices": {
        "post": {
            "summary": "Create a voice profile from 3-15 s of WAV or Ogg (API key)",
            "requestBody": {
                "required": True,
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "required": ["name", "file"],
                            "properties": {
                                "name": {
                                    "type": "string",
                                    "minLength": 1,
                                    "maxLength": MAX_NAME_CHARS,
                                },
                                "file": {"type": "string", "format": "binary"},
                                "text": {"type": "string", "maxLength": 1000},
                            },
                        }
                    }
                },
            },
            "responses": {"201": _json(VOICE, "Created"), **_errors(*ERRORS_WRITE)},
        },
        "get": {
            "summary": "The built-in voices and the tenant's own",
            "responses": {"200": _json(_list(VOICE)), **_errors(*ERRORS_READ)},
        },
    },
    "/v1/voices/{voice_id}": {
        "get": {
            "summary": "A voice",
            "parameters": [_path("voice_id")],
            "responses": {"200": _json(VOICE), **_errors(*ERRORS_READ)},
        },
        "delete": {
            "summary": "Delete a voice profile",
            "parameters": [_path("voice_id")],
            "responses": {"204": {"description": "Deleted"}, **_errors(*ERRORS_READ)},
        },
    },
}
