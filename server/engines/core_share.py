"""The node's cores, shared by its worker processes: how many threads a step may use now.

Each worker (server/workers) runs engines of its own on the same cores. llama.cpp's
threads meet at a barrier after every operation of a step, so a thread that waits for a
core holds up the others: two workers each running two threads on two cores slow each
other down, while a worker alone on the node should use every core (a prompt is
evaluated sooner). So each worker stamps, in a small file the front made (one float64
per worker, memory-mapped: a read is a few microseconds, no system call), when its
engines last computed, +inf while they compute; a step then takes `cores // busy`
threads, `busy` counting the workers that compute now or did within `RECENT_S` (the gap
between two token steps), itself included.

A single process (`HARK_WORKERS=1`) has no file: every step takes the configured threads.
"""

from __future__ import annotations

import contextlib
import math
import mmap
import os
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from server.config import usable_cores

ENV = "HARK_CORE_SHARE"  # the file, set by the front for its workers
INDEX_ENV = "HARK_WORKER_INDEX"
STAMP = struct.Struct("d")
# A worker that computed this recently is still busy: between two of its token steps it
# only hands a token on, and it takes the cores back at once.
RECENT_S = 0.05


def threads_for(wanted: int, cores: int, busy: int) -> int:
    """Threads for a step: `wanted` (the configured most) when this worker computes alone,
    else its share of the `cores` among the `busy` workers (itself included), at least 1."""
    if busy <= 1:
        return max(1, wanted)
    return max(1, min(wanted, cores // busy))


def create(path: Path, workers: int) -> None:
    """The front's file: one stamp per worker, none busy."""
    path.write_bytes(STAMP.pack(-math.inf) * workers)


class CoreShare:
    """This worker's view of the node's cores (see the module's docstring)."""

    def __init__(
        self,
        path: str | Path | None,
        index: int = 0,
        cores: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cores = cores or max(1, usable_cores())
        self.index = index
        self._clock = clock
        self._map: mmap.mmap | None = None
        self._workers = 1
        self._active = 0  # this process's engines computing now (STT and LLM threads)
        self._lock = threading.Lock()
        if path:
            with open(path, "r+b") as file:
                self._map = mmap.mmap(file.fileno(), 0)
            self._workers = len(self._map) // STAMP.size
            if not 0 <= index < self._workers:
                raise ValueError(f"worker {index} is not in the core share of {self._workers}")
            self._stamp(-math.inf)  # a worker restarted mid-step left its stamp busy

    @classmethod
    def from_env(cls) -> CoreShare:
        """The front's file for this worker, or none (a single process)."""
        return cls(os.environ.get(ENV) or None, int(os.environ.get(INDEX_ENV) or 0))

    @property
    def shared(self) -> bool:
        return self._map is not None

    def threads(self, wanted: int) -> int:
        """Threads for a step about to start in this worker: the workers busy now, this
        one, and one more while another engine of this worker computes (its Whisper
        beside its llama.cpp)."""
        if self._map is None:
            return max(1, wanted)
        return threads_for(wanted, self.cores, self.busy_others() + 1 + (self._active > 0))

    def busy_others(self) -> int:
        if self._map is None:
            return 0
        since = self._clock() - RECENT_S
        return sum(
            STAMP.unpack_from(self._map, i * STAMP.size)[0] >= since
            for i in range(self._workers)
            if i != self.index
        )

    @contextlib.contextmanager
    def computing(self) -> Iterator[None]:
        """Stamps this worker busy while the block runs (nested or from several threads)."""
        if self._map is None:
            yield
            return
        with self._lock:
            self._active += 1
            self._stamp(math.inf)
        try:
            yield
        finally:
            with self._lock:
                self._active -= 1
                if self._active == 0:
                    self._stamp(self._clock())

    def _stamp(self, value: float) -> None:
        assert self._map is not None
        STAMP.pack_into(self._map, self.index * STAMP.size, value)

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None
