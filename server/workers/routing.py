"""Which worker a request belongs to, from the request alone (no lookup table).

A worker tags the ids of the calls it creates with its index (`rtc_w1_…`, `ws_w0_…`,
HARK_WORKER_INDEX, see server/calls/manager.py), so anything about a live call (hang-up,
the sideband `?call_id=`, the operator's timeline or end) goes to its owner. A new call
goes to the least-loaded ready worker; anything else to any ready worker, in turn.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from typing import Protocol, TypeVar

OWNER = re.compile(r"^(?:rtc|ws)_w(\d{1,4})_")
CALL_PATH = re.compile(r"^/v1/(?:realtime|operator)/calls/([^/]+)")
NEW_CALL_PATHS = ("/v1/realtime/calls", "/v1/realtime")


class Routable(Protocol):
    @property
    def index(self) -> int: ...

    @property
    def ready(self) -> bool: ...

    @property
    def load(self) -> int: ...


def owner_of(call_id: str) -> int | None:
    """The index of the worker that created `call_id`, or None for an untagged id."""
    match = OWNER.match(call_id)
    return int(match.group(1)) if match else None


def call_id_of(path: str, query: Mapping[str, str]) -> str | None:
    """The live call a request is about: in its path, or the sideband's `?call_id=`."""
    match = CALL_PATH.match(path)
    if match:
        return match.group(1)
    return query.get("call_id") or None


def opens_call(method: str, path: str, websocket: bool) -> bool:
    """A request that creates a call: an SDP offer, or a WebSocket session (not a sideband)."""
    if websocket:
        return path == "/v1/realtime"
    return method == "POST" and path.rstrip("/") in NEW_CALL_PATHS


W = TypeVar("W", bound=Routable)


def least_loaded(workers: Sequence[W], exclude: Collection[int] = ()) -> W | None:
    """The ready worker with the fewest calls (live + being created); ties: lowest index."""
    ready = [w for w in workers if w.ready and w.index not in exclude]
    return min(ready, key=lambda w: (w.load, w.index), default=None)
