"""What a worker process does differently under the front: the variables the front sets.

`HARK_STATE_SOCKET`: the front's shared state (used unless `HARK_REDIS_URL` is set, which
every worker then uses directly). `HARK_FRONT_TOKEN`: trust `X-Forwarded-For` from the
front (`peer.py`). `HARK_WORKER_INDEX` tags call ids (server/calls/manager.py). A process
started without them (HARK_WORKERS=1) is the plain single-process Hark.
"""

from __future__ import annotations

import os
from typing import Any

from server.cluster.shared_state import SharedState, open_shared_state
from server.config import Config
from server.workers.local_state import LocalState
from server.workers.peer import front_peer_middleware


def shared_state_for(config: Config) -> SharedState:
    socket = os.environ.get("HARK_STATE_SOCKET", "")
    if socket and not config.redis_url:
        return LocalState(socket)
    return open_shared_state(config.redis_url)


def worker_middlewares() -> list[Any]:
    token = os.environ.get("HARK_FRONT_TOKEN", "")
    return [front_peer_middleware(token)] if token else []
