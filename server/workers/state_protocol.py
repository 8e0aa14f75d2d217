"""The wire of the front's shared state: one JSON object per line over a unix socket.

A request is `{"id": n, "op": name, "args": [...]}`, answered by `{"id": n, "result": …}`
or `{"id": n, "error": text}`. `subscribe` asks for every later message on a channel as
`{"channel": c, "message": m}` on the same connection. Ops are exactly the methods of
`SharedState` (server/cluster/shared_state.py), so a worker's `LocalState` and the
front's `MemoryState` agree by construction.
"""

from __future__ import annotations

import json
from typing import Any

# The SharedState methods a worker may call remotely (besides subscribe/close).
OPS = frozenset(
    {
        "claim_once",
        "count_hit",
        "set_value",
        "get_value",
        "values",
        "lease_add",
        "lease_remove",
        "lease_members",
        "record_put",
        "record_get",
        "record_delete",
        "publish",
    }
)
# A line longer than this is refused (records are small; a runaway peer is not trusted).
MAX_LINE = 1 << 20


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"
