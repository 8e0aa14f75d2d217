"""The background tasks of one call: named after it, logged if they fail, all cancelled
when it ends, so a hung-up call leaves nothing running."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger("hark.session")


class CallTasks:
    def __init__(self, call_id: str) -> None:
        self._call_id = call_id
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=f"{self._call_id}-{name}")
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def named(self, name: str) -> list[asyncio.Task[Any]]:
        """The running tasks spawned as `name`."""
        return [t for t in self._tasks if t.get_name() == f"{self._call_id}-{name}"]

    def cancel_all(self) -> None:
        """Cancel every task but the one calling (a task may close its own call)."""
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current:
                task.cancel()

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "call %s task %s failed", self._call_id, task.get_name(), exc_info=task.exception()
            )
