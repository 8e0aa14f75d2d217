"""A GBNF grammar from a tool's JSON Schema, so a small model can only write valid arguments.

llama.cpp samples only tokens the grammar allows, so the arguments always parse and fit
the schema's types, enums and required fields, whatever the model. Two things a schema
leaves open are closed here, because a small model fills open space with repetition
until it runs out of tokens (and cut-off JSON is no JSON): strings without a length
limit get one, arrays without a size limit get one. An object schema without
properties allows only `{}`, which every such schema accepts. A boolean property schema
becomes any value (`true`) or no property (`false`). A schema llama-cpp's
converter cannot handle falls back to any JSON object.
"""

from __future__ import annotations

import copy
import json
import logging
from typing import Any

from llama_cpp.llama_grammar import JSON_GBNF, LlamaGrammar, json_schema_to_gbnf

log = logging.getLogger("hark.engines")

MAX_STRING_CHARS = 60
MAX_ARRAY_ITEMS = 6
_OPEN_STRING_KEYS = ("maxLength", "enum", "const", "pattern", "format")
_EMPTY_OBJECT_GBNF = 'root ::= "{" "}"'
_ANY_OBJECT_GBNF = JSON_GBNF  # its root is an object


def bounded_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A copy of `schema` with every string and array given an upper bound."""
    bounded = copy.deepcopy(schema)
    _bound(bounded)
    return bounded


def _bound(node: Any) -> None:
    if isinstance(node, list):
        for item in node:
            _bound(item)
        return
    if not isinstance(node, dict):
        return
    properties = node.get("properties")
    if isinstance(properties, dict):
        # JSON Schema's boolean schemas: `true` takes any value, `false` none (never written).
        for name, sub in list(properties.items()):
            if sub is True:
                properties[name] = {}
            elif sub is False:
                del properties[name]
    kind = node.get("type")
    if kind == "string" and not any(key in node for key in _OPEN_STRING_KEYS):
        node["maxLength"] = MAX_STRING_CHARS
    if kind == "array" and "maxItems" not in node:
        node["maxItems"] = max(MAX_ARRAY_ITEMS, int(node.get("minItems", 0) or 0))
    for value in node.values():
        _bound(value)


def grammar_text(schema: dict[str, Any]) -> str:
    """The GBNF text for arguments matching `schema` (a tool's `parameters`)."""
    if not schema.get("properties") and not any(
        key in schema for key in ("anyOf", "oneOf", "allOf", "$ref")
    ):
        return _EMPTY_OBJECT_GBNF
    try:
        return json_schema_to_gbnf(json.dumps(bounded_schema(schema)))
    except Exception as exc:  # the converter asserts on what it does not support
        log.warning("tool schema not convertible to a grammar (%s); any JSON object", exc)
        return _ANY_OBJECT_GBNF


def arguments_grammar(schema: dict[str, Any]) -> LlamaGrammar:
    return LlamaGrammar.from_string(grammar_text(schema), verbose=False)
