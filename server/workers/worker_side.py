"""What a worker process does differently under the front: the variables the front sets.

`HARK_STATE_SOCKET`: the front's shared state (used unless `HARK_REDIS_URL` is set, which
every worker then uses directly). `HARK_FRONT_TOKEN`: trust `X-Forwarded-For` from the
front (`peer.py`). `HARK_WORKER_INDEX` tags call ids (server/calls/manager.py). A process
started without them (HARK_WORKERS=1) is the plain single-process Hark.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from server.cluster.shared_state import SharedState, open_shared_state
from server.config import Config
from server.ops.log_format import FIELDS_ATTR
from server.workers.local_state import LocalState
from server.workers.peer import front_peer_middleware


def shared_state_for(config: Config) -> SharedState:
    socket = os.environ.get("HARK_STATE_SOCKET", "")
    if socket and not config.redis_url:
        return LocalState(socket)
    return open_shared_state(config.redis_url)


def worker_middlewares() -> list[Any]:
    """Under the front: trust its forwarded address, and keep its health polls (two a
    second) out of the access log (the front logs a worker's changes of state)."""
    token = os.environ.get("HARK_FRONT_TOKEN", "")
    if not token:
        return []
    logging.getLogger("hark.http").addFilter(_not_a_health_poll)
    return [front_peer_middleware(token)]


def _not_a_health_poll(record: logging.LogRecord) -> bool:
    fields = getattr(record, FIELDS_ATTR, {})
    return not (fields.get("event") == "http.request" and fields.get("path") == "/healthz")
