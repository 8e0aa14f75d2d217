"""An engine loaded when a call first needs it, not at start-up.

Whisper base and Kokoro cost seconds to load and ~400 MB of memory, and most calls on an
English deployment never need them. The first call that does waits for the load (on
the engine's own worker thread, never the event loop); calls arriving meanwhile wait for
the same load. A failed load is raised to that call and tried again by the next.
HARK_MULTILINGUAL=start loads them with the other engines instead.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Generic, Protocol, TypeVar

log = logging.getLogger("hark.engines")


class Loadable(Protocol):
    async def load(self) -> None: ...


E = TypeVar("E", bound=Loadable)


class OnFirstUse(Generic[E]):
    def __init__(self, engine: E, label: str) -> None:
        self.engine = engine
        self.label = label
        self.loaded = False
        self._lock: asyncio.Lock | None = None

    async def get(self) -> E:
        """The engine, loaded (by this call, or by the one that got here first)."""
        if self.loaded:
            return self.engine
        self._lock = self._lock or asyncio.Lock()
        async with self._lock:
            if not self.loaded:
                log.info("a call needs %s: loading it now", self.label)
                await self.engine.load()
                self.loaded = True
        return self.engine
