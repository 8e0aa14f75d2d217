"""Function tools and `tool_choice` as a client sends them (session or response), checked.

A tool is `{"type": "function", "name", "description", "parameters"}` with `parameters`
a JSON Schema object (checked against the JSON Schema meta-schema). Hark calls only
function tools: other types (`mcp`) are refused by name rather than dropped, as are
remote `$ref`s and `$schema`s (checking them would mean fetching URLs a client chose).
Every refusal names the offending parameter, e.g. `session.tools[0].parameters.type`.
"""

from __future__ import annotations

import re
from typing import Any

import jsonschema_rs

from server.engines.chat import ToolChoice, ToolSpec
from server.protocol.params import InvalidParam

MAX_TOOLS = 128
MAX_DESCRIPTION_CHARS = 4_000
MAX_SCHEMA_DEPTH = 12
NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
TOOL_CHOICE_MODES = ("auto", "none", "required")
_DRAFTS = (
    "http://json-schema.org/draft-04/schema",
    "http://json-schema.org/draft-06/schema",
    "http://json-schema.org/draft-07/schema",
    "https://json-schema.org/draft/2019-09/schema",
    "https://json-schema.org/draft/2020-12/schema",
)


def parse_tools(raw: Any, param: str) -> tuple[ToolSpec, ...]:
    if not isinstance(raw, list):
        raise InvalidParam(param, f"{param} must be an array of tools")
    if len(raw) > MAX_TOOLS:
        raise InvalidParam(param, f"{param} holds more than {MAX_TOOLS} tools")
    # Two tools of one name are both kept (a named tool_choice means the first).
    return tuple(parse_tool(entry, f"{param}[{index}]") for index, entry in enumerate(raw))


def parse_tool(raw: Any, param: str) -> ToolSpec:
    if not isinstance(raw, dict):
        raise InvalidParam(param, f"{param} must be an object")
    kind = raw.get("type", "function")
    if kind != "function":
        raise InvalidParam(
            f"{param}.type",
            f"Tool type {str(kind)[:40]!r} is not supported by this server; use 'function'",
            code="unsupported_tool_type",
        )
    name = raw.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        raise InvalidParam(
            f"{param}.name", f"{param}.name must be 1-64 letters, digits, '_' or '-'"
        )
    description = raw.get("description", "")
    if description is None:
        description = ""
    if not isinstance(description, str) or len(description) > MAX_DESCRIPTION_CHARS:
        raise InvalidParam(
            f"{param}.description",
            f"{param}.description must be a string of at most {MAX_DESCRIPTION_CHARS} chars",
        )
    parameters = raw.get("parameters")
    if parameters is None:
        parameters = {"type": "object", "properties": {}}
    check_parameters(parameters, f"{param}.parameters")
    return ToolSpec.of(name, description, parameters)


def check_parameters(schema: Any, param: str) -> None:
    """Refuse anything that is not a JSON Schema for a JSON object."""
    if not isinstance(schema, dict):
        raise InvalidParam(param, f"{param} must be a JSON Schema object")
    if schema.get("type", "object") != "object":
        raise InvalidParam(
            f"{param}.type", f"{param} must describe an object: its type must be 'object'"
        )
    _check_local(schema, param, 0)
    try:
        jsonschema_rs.meta.validate(schema)
    except jsonschema_rs.ValidationError as exc:
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in exc.instance_path)
        first = str(exc).splitlines()[0] if str(exc) else "invalid"
        raise InvalidParam(
            f"{param}{where}", f"{param}{where} is not valid JSON Schema: {first[:200]}"
        ) from exc
    except (ValueError, jsonschema_rs.ReferencingError) as exc:
        raise InvalidParam(param, f"{param} is not valid JSON Schema: {str(exc)[:200]}") from exc


def _check_local(node: Any, param: str, depth: int) -> None:
    """No remote references, and no nesting deep enough to make grammars explode."""
    if depth > MAX_SCHEMA_DEPTH:
        raise InvalidParam(param, f"{param} nests deeper than {MAX_SCHEMA_DEPTH} levels")
    if isinstance(node, list):
        for index, item in enumerate(node):
            _check_local(item, f"{param}[{index}]", depth + 1)
        return
    if not isinstance(node, dict):
        return
    ref = node.get("$ref")
    if isinstance(ref, str) and not ref.startswith("#"):
        raise InvalidParam(f"{param}.$ref", "Only local references ('#/...') are allowed")
    meta = node.get("$schema")
    if isinstance(meta, str) and meta.rstrip("#") not in _DRAFTS:
        raise InvalidParam(f"{param}.$schema", "Only the standard JSON Schema drafts are known")
    for key, value in node.items():
        _check_local(value, f"{param}.{key}", depth + 1)


def parse_tool_choice(raw: Any, param: str) -> ToolChoice:
    """`auto` | `none` | `required` | `{"type": "function", "name": …}`."""
    if isinstance(raw, str):
        if raw not in TOOL_CHOICE_MODES:
            raise InvalidParam(param, f"{param} must be auto, none, required or a function")
        return ToolChoice(raw)  # type: ignore[arg-type]
    if isinstance(raw, dict):
        if raw.get("type") != "function":
            raise InvalidParam(
                f"{param}.type",
                f"{param}.type {str(raw.get('type'))[:40]!r} is not supported; use 'function'",
            )
        # GA puts the name at the top; the Chat Completions shape nests it.
        function = raw.get("function")
        name = raw.get("name", function.get("name") if isinstance(function, dict) else None)
        if not isinstance(name, str) or not NAME.match(name):
            raise InvalidParam(f"{param}.name", f"{param}.name must name a function tool")
        return ToolChoice.function(name)
    raise InvalidParam(param, f"{param} must be a string or an object")


def check_choice_names_a_tool(choice: ToolChoice, tools: tuple[ToolSpec, ...], param: str) -> None:
    if choice.mode == "function" and not any(tool.name == choice.name for tool in tools):
        raise InvalidParam(f"{param}.name", f"No tool named {choice.name!r} in tools")


def tool_dict(tool: ToolSpec) -> dict[str, Any]:
    return {
        "type": "function",
        "name": tool.name,
        "description": tool.description,
        "parameters": tool.parameters,
    }


def tool_choice_value(choice: ToolChoice) -> str | dict[str, Any]:
    if choice.mode == "function":
        return {"type": "function", "name": choice.name}
    return choice.mode
