"""The OpenAPI 3.1 description of Hark's HTTP API, served at `GET /openapi.json`.

Written by hand next to the routes it describes; the schemathesis test checks that the
server keeps to it (no 500s, documented statuses and shapes).
"""

from __future__ import annotations

import copy
from typing import Any

from aiohttp import web

from server.protocol.audio_format import BETA_NAMES, PCM, PCM_RATES, PCMA, PCMU
from server.protocol.session_config import (
    MAX_INSTRUCTIONS_CHARS,
    MAX_MODEL_CHARS,
    MAX_OUTPUT_TOKENS,
    MAX_VOICE_CHARS,
    SESSION_TYPES,
    SPEED_RANGE,
    TURN_DETECTION_FLAGS,
    TURN_DETECTION_RANGES,
    TURN_DETECTION_TYPES,
)
from server.protocol.tools import MAX_DESCRIPTION_CHARS, MAX_TOOLS, NAME, TOOL_CHOICE_MODES
from server.turns.end_of_turn import EAGERNESS


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


ERRORS: dict[str, Any] = {
    "400": _error("Malformed request"),
    "401": _error("Missing, invalid, expired, used or revoked credentials"),
    "403": _error("The credential may not use this endpoint"),
    "404": _error("No such route or call"),
    "405": _error("Method not allowed"),
    "413": _error("Body too large"),
    "415": _error("Unsupported content type"),
    "429": _error("Rate or concurrency limit reached (see Retry-After)"),
    "503": _error("Starting, full, or shared state unavailable (see Retry-After)"),
}

CALL_ID = {"name": "call_id", "in": "path", "required": True, "schema": {"type": "string"}}
WEBSOCKET = {
    "get": {
        "summary": "A call over a WebSocket (`?model=`), or join a live call as a sideband "
        "(`?call_id=`): an HTTP upgrade, refused with an error body before it",
        "description": "Credentials: Authorization: Bearer (API key or ek_ client secret; "
        "for a sideband the call's own API key or an operator token), or the subprotocol "
        "`openai-insecure-api-key.<key>` beside `realtime`. Events are OpenAI Realtime's, "
        "as JSON text frames.",
        "parameters": [
            {
                "name": "model",
                "in": "query",
                "schema": {"type": "string", "maxLength": MAX_MODEL_CHARS},
            },
            {"name": "call_id", "in": "query", "schema": {"type": "string"}},
            {"name": "intent", "in": "query", "schema": {"enum": ["transcription"]}},
        ],
        "responses": {
            "101": {"description": "Switching to the WebSocket protocol"},
            "409": _error("The call lives on another node (named in the Hark-Call-Node header)"),
            "426": _error("Not a WebSocket upgrade request"),
            **ERRORS,
        },
    }
}


# OpenAI's turn_detection with Hark's extensions, built from the tables the server checks
# against (server/protocol/session_config.py); null turns turn detection off.
TURN_DETECTION = {
    "type": ["object", "null"],
    "properties": {
        "type": {"enum": list(TURN_DETECTION_TYPES)},
        "eagerness": {"enum": list(EAGERNESS)},
        **{
            key: {"type": "number", "minimum": lo, "maximum": hi}
            for key, (lo, hi) in TURN_DETECTION_RANGES.items()
        },
        **{key: {"type": "boolean"} for key in TURN_DETECTION_FLAGS},
        "echo_guard": {"enum": ["auto", "on", "off", True, False, None]},
    },
}
VOICE = {"type": ["string", "null"], "maxLength": MAX_VOICE_CHARS}
SPEED = {"type": "number", "minimum": SPEED_RANGE[0], "maximum": SPEED_RANGE[1]}
MODALITIES = {"type": "array", "minItems": 1, "items": {"enum": ["audio", "text"]}}
MAX_TOKENS = {
    "oneOf": [
        {"type": "integer", "minimum": 1, "maximum": MAX_OUTPUT_TOKENS},
        {"const": "inf"},
    ]
}
# A function tool; `parameters` must be a JSON Schema for an object (checked against the
# JSON Schema meta-schema; only its outline is described here).
TOOL = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "type": {"const": "function"},
        "name": {"type": "string", "pattern": NAME.pattern},
        "description": {"type": ["string", "null"], "maxLength": MAX_DESCRIPTION_CHARS},
        "parameters": {
            "type": ["object", "null"],
            "properties": {
                "type": {"const": "object"},
                # JSON Schema lets a property's schema be a boolean (true: anything).
                "properties": {
                    "type": "object",
                    "additionalProperties": {"type": ["object", "boolean"]},
                },
                "required": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
            },
        },
    },
}
# audio.input.format / audio.output.format (server/protocol/audio_format.py): null = unchanged.
AUDIO_FORMAT = {
    "anyOf": [
        {
            "type": "object",
            "required": ["type"],
            "properties": {
                "type": {"const": PCM},
                "rate": {"type": "integer", "minimum": PCM_RATES[0], "maximum": PCM_RATES[1]},
            },
        },
        {"type": "object", "required": ["type"], "properties": {"type": {"enum": [PCMU, PCMA]}}},
        {"enum": [*BETA_NAMES, None]},
    ]
}
SESSION = {
    "type": "object",
    "description": "A Realtime session configuration (OpenAI's session object, GA or beta "
    "shape). Fields not listed are ignored. `tool_choice` may also be "
    '`{"type": "function", "name": …}` naming one of `tools`.',
    "properties": {
        "type": {"enum": list(SESSION_TYPES)},
        "model": {"type": "string", "maxLength": MAX_MODEL_CHARS},
        "instructions": {"type": "string", "maxLength": MAX_INSTRUCTIONS_CHARS},
        "voice": VOICE,
        "speed": SPEED,
        "turn_detection": TURN_DETECTION,
        "tools": {"type": "array", "maxItems": MAX_TOOLS, "items": TOOL},
        "tool_choice": {"enum": list(TOOL_CHOICE_MODES)},
        "output_modalities": MODALITIES,
        "modalities": MODALITIES,
        "max_output_tokens": MAX_TOKENS,
        "max_response_output_tokens": MAX_TOKENS,
        "prompt": {"type": "null"},
        "input_audio_format": AUDIO_FORMAT,
        "output_audio_format": AUDIO_FORMAT,
        "audio": {
            "type": "object",
            "properties": {
                "input": {
                    "type": "object",
                    "properties": {"turn_detection": TURN_DETECTION, "format": AUDIO_FORMAT},
                },
                "output": {
                    "type": "object",
                    "properties": {"voice": VOICE, "speed": SPEED, "format": AUDIO_FORMAT},
                },
            },
        },
    },
}

SPEC: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "Hark",
        "version": "0.1.0",
        "description": "Self-hosted OpenAI Realtime WebRTC API, with Hark's own extensions.",
    },
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "Error": {
                "type": "object",
                "required": ["error"],
                "properties": {
                    "error": {
                        "type": "object",
                        "required": ["type", "code", "message"],
                        "properties": {
                            "type": {"type": "string"},
                            "code": {"type": "string"},
                            "message": {"type": "string"},
                            "param": {"type": ["string", "null"]},
                        },
                    }
                },
            },
            "ClientSecret": {
                "type": "object",
                "required": ["value", "expires_at"],
                "properties": {
                    "value": {"type": "string"},
                    "expires_at": {"type": "integer"},
                    "session": {"type": "object", "description": "The full session object"},
                },
            },
        },
    },
    "security": [{"bearer": []}],
    "paths": {
        "/v1/realtime/client_secrets": {
            "post": {
                "summary": "Mint a single-use client secret (API key)",
                "requestBody": {
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "session": SESSION,
                                    "sub": {"type": "string", "maxLength": 256},
                                    "user": {"type": "string", "maxLength": 256},
                                    "expires_after": {
                                        "type": ["object", "null"],
                                        "properties": {
                                            "anchor": {"const": "created_at"},
                                            "seconds": {
                                                "type": "integer",
                                                "minimum": 10,
                                                "maximum": 7200,
                                            },
                                        },
                                    },
                                },
                            }
                        }
                    }
                },
                "responses": {
                    "200": {
                        "description": "The secret",
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/ClientSecret"}
                            }
                        },
                    },
                    **ERRORS,
                },
            }
        },
        "/v1/realtime/calls": {
            "post": {
                "summary": "Open a call with an SDP offer (client secret or API key)",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/sdp": {"schema": {"type": "string"}},
                        "multipart/form-data": {
                            "schema": {
                                "type": "object",
                                "required": ["sdp"],
                                "properties": {
                                    "sdp": {"type": "string"},
                                    "session": {"type": "string"},
                                },
                            }
                        },
                    },
                },
                "responses": {
                    "201": {
                        "description": "The answer SDP; Location names the call",
                        "content": {"application/sdp": {"schema": {"type": "string"}}},
                    },
                    **ERRORS,
                },
            }
        },
        "/v1/realtime": WEBSOCKET,
        "/v1/realtime/calls/{call_id}": {
            "delete": {
                "summary": "Hang up (idempotent)",
                "parameters": [CALL_ID],
                "responses": {"204": {"description": "Hung up"}, **ERRORS},
            }
        },
        "/v1/realtime/calls/{call_id}/hangup": {
            "post": {
                "summary": "Hang up (idempotent), as current OpenAI SDKs do",
                "parameters": [CALL_ID],
                "responses": {"204": {"description": "Hung up"}, **ERRORS},
            }
        },
        "/hark/admin/tokens": {
            "post": {
                "summary": "Mint an operator (or realtime) token (admin key)",
                "requestBody": {
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "scope": {"enum": ["operator", "realtime"]},
                                    "ttl_seconds": {
                                        "type": "integer",
                                        "minimum": 10,
                                        "maximum": 2592000,
                                    },
                                    "sub": {"type": "string", "minLength": 1, "maxLength": 256},
                                },
                            }
                        }
                    }
                },
                "responses": {
                    "200": {
                        "description": "The token",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    **ERRORS,
                },
            }
        },
        "/hark/revocations": {
            "post": {
                "summary": "Revoke a user's (sub's) tokens and end their calls (API key)",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["sub"],
                                "properties": {
                                    "sub": {"type": "string", "minLength": 1, "maxLength": 256}
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "200": {
                        "description": "Revoked",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    **ERRORS,
                },
            }
        },
        "/hark/diagnostics": {
            "get": {
                "summary": "Process counters: tasks, peer connections, fds, RSS (operator)",
                "responses": {
                    "200": {
                        "description": "Counters",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    **ERRORS,
                },
            }
        },
        "/healthz": {
            "get": {
                "summary": "Readiness",
                "security": [],
                "responses": {
                    "200": {
                        "description": "Ready",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    "503": {
                        "description": "Loading, or draining after SIGTERM",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                },
            }
        },
    },
}


def document(personas: tuple[str, ...] = (), recording: bool = False) -> dict[str, Any]:
    """The served document: the routes above, the memory routes, and the session's Hark
    fields as this server accepts them (its personas; recording only where allowed)."""
    from signaling.openapi_memory import CONVERSATION_ID_PATTERN, PATHS

    spec = copy.deepcopy(SPEC)
    spec["paths"].update(copy.deepcopy(PATHS))
    session = spec["paths"]["/v1/realtime/client_secrets"]["post"]["requestBody"]
    properties = session["content"]["application/json"]["schema"]["properties"]["session"]
    properties["properties"].update(
        {
            "conversation": {"type": ["string", "null"], "pattern": CONVERSATION_ID_PATTERN},
            "persona": {"enum": [*personas, None]},
            "recording": {"type": "boolean"} if recording else {"const": False},
        }
    )
    return spec


def openapi_handler(spec: dict[str, Any]) -> Any:
    async def openapi_json(request: web.Request) -> web.Response:
        return web.json_response(spec)

    return openapi_json


async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(SPEC)
