"""The OpenAPI 3.1 description of Hark's HTTP API, served at `GET /openapi.json`.

Written by hand next to the routes it describes; the schemathesis test checks that the
server keeps to it (no 500s, documented statuses and shapes).
"""

from __future__ import annotations

import copy
from typing import Any

from aiohttp import web

from server.protocol.session_config import (
    MAX_INSTRUCTIONS_CHARS,
    MAX_MODEL_CHARS,
    MAX_VOICE_CHARS,
    TURN_DETECTION_FLAGS,
    TURN_DETECTION_RANGES,
    TURN_DETECTION_TYPES,
)
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
        "echo_guard": {"type": ["boolean", "null"]},
    },
}
VOICE = {"type": ["string", "null"], "maxLength": MAX_VOICE_CHARS}
SESSION = {
    "type": "object",
    "description": "A Realtime session configuration (OpenAI's session object, GA or beta "
    "shape). Fields not listed are ignored.",
    "properties": {
        "type": {"const": "realtime"},
        "model": {"type": "string", "maxLength": MAX_MODEL_CHARS},
        "instructions": {"type": "string", "maxLength": MAX_INSTRUCTIONS_CHARS},
        "voice": VOICE,
        "turn_detection": TURN_DETECTION,
        "audio": {
            "type": "object",
            "properties": {
                "input": {"type": "object", "properties": {"turn_detection": TURN_DETECTION}},
                "output": {"type": "object", "properties": {"voice": VOICE}},
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
        "/v1/realtime/calls/{call_id}": {
            "delete": {
                "summary": "Hang up (idempotent)",
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
                        "description": "Loading",
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
