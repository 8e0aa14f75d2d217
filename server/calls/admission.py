"""Admission of new calls by the load of the node's engines: GPU memory and engine queues.

A GPU node that takes one call too many does not slow down gracefully: it runs out of
memory (every call fails) or its engine queues grow until every call's replies come
late. So before a new call is accepted, the HTTP face asks `AdmissionGuard.check()`,
which refuses with `Overloaded("server_full")` (HTTP 503 with `Retry-After`) while GPU
memory use is above `HARK_GPU_MEMORY_LIMIT` (of any GPU) or an engine has more than
`HARK_MAX_ENGINE_QUEUE` jobs waiting. Live calls are never touched.

GPU memory is read through NVML (`nvidia-ml-py`, the `gpu` extra), the driver's own
counters, so memory held by other processes on the GPU (a vLLM server) counts too. On a
host without a GPU (no NVML library, no device) the guard says so at start and checks
only the queues.

With a `LoadMonitor` (server.calls.load) it also refuses while the node's measured load,
event-loop lag, outbound pacing slip or CPU, has stayed over its limit for a window:
the calls already here would be the ones to suffer. A node with no call at all always
admits one (its load is someone else's, and a node must be able to start serving).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from server.calls.load import LoadMonitor
from server.errors import Overloaded

log = logging.getLogger("hark.admission")

RETRY_AFTER_S = 5


class GpuMemory(Protocol):
    """Where the guard reads GPU memory use (NVML; a fake in tests)."""

    def used_fractions(self) -> list[float]:
        """Memory in use / total, per GPU."""
        ...


class NvmlMemory:
    """GPU memory through NVML (nvidia-ml-py)."""

    def __init__(self, handles: list[object]) -> None:
        self._handles = handles

    @classmethod
    def open(cls) -> tuple[NvmlMemory | None, str]:
        """The reader, or None and why not (no package, no driver library, no GPU)."""
        try:
            import pynvml
        except ImportError:
            return None, "nvidia-ml-py is not installed (the gpu extra)"
        try:
            pynvml.nvmlInit()
            count = pynvml.nvmlDeviceGetCount()
            handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        except pynvml.NVMLError as exc:
            return None, f"NVML is not available ({exc})"
        if not handles:
            return None, "NVML sees no GPU"
        return cls(handles), f"{len(handles)} GPU(s) through NVML"

    def used_fractions(self) -> list[float]:
        import pynvml

        fractions = []
        for handle in self._handles:
            info = pynvml.nvmlDeviceGetMemoryInfo(handle)
            fractions.append(info.used / info.total if info.total else 0.0)
        return fractions


class AdmissionGuard:
    def __init__(
        self,
        memory: GpuMemory | None,
        *,
        memory_limit: float,
        queues: Callable[[], dict[str, int]],
        max_queue: int,
        load: LoadMonitor | None = None,
    ) -> None:
        """`queues()`: each engine's waiting jobs by name; `max_queue` 0: no limit;
        `load`: the node's measured load (None: not checked)."""
        self.memory = memory
        self.load = load
        self.memory_limit = memory_limit
        self.max_queue = max_queue
        self._queues = queues

    @classmethod
    def for_node(
        cls,
        memory_limit: float,
        max_queue: int,
        queues: Callable[[], dict[str, int]],
        load: LoadMonitor | None = None,
    ) -> AdmissionGuard:
        """The guard for this host, saying at start whether it watches GPU memory."""
        memory, why = NvmlMemory.open()
        if memory is None:
            log.info("GPU memory guard off: %s; engine queues capped at %s", why, max_queue or "∞")
        else:
            log.info(
                "GPU memory guard on: %s; new calls refused above %.0f%% in use",
                why,
                memory_limit * 100,
            )
        if load is None:
            log.info("admission by measured load off")
        else:
            log.info("admission by measured load on: %s", load.limits)
        return cls(memory, memory_limit=memory_limit, queues=queues, max_queue=max_queue, load=load)

    def check(self, live_calls: int = 0) -> None:
        """Raise `Overloaded("server_full")` if a new call should wait (`live_calls`: the
        calls this node holds now)."""
        if self.memory is not None:
            try:
                fractions = self.memory.used_fractions()
            except Exception as exc:  # a driver hiccup must not refuse every call
                log.warning("GPU memory could not be read: %s", exc)
                fractions = []
            for index, used in enumerate(fractions):
                if used > self.memory_limit:
                    raise Overloaded(
                        "server_full",
                        f"GPU {index} has {used:.0%} of its memory in use (limit "
                        f"{self.memory_limit:.0%}); retry shortly or on another node",
                        retry_after_s=RETRY_AFTER_S,
                    )
        if self.max_queue:
            for engine, depth in self._queues().items():
                if depth > self.max_queue:
                    raise Overloaded(
                        "server_full",
                        f"The {engine} engine has {depth} jobs waiting (limit "
                        f"{self.max_queue}); retry shortly or on another node",
                        retry_after_s=RETRY_AFTER_S,
                    )
        # Last: judging the load notes the call as admitted.
        if self.load is not None and live_calls > 0:
            why = self.load.judge(live_calls)
            if why is not None:
                reading = self.load.reading()
                raise Overloaded(
                    "server_full",
                    f"This node is at capacity ({why}: loop lag "
                    f"{reading.loop_lag_ms:.0f} ms, {reading.pacing_slip:.0%} of frames "
                    f"late, CPU {reading.cpu:.0%} of {reading.cores} cores, loop busy "
                    f"{reading.loop_busy:.0%}); retry shortly "
                    "or on another node",
                    retry_after_s=RETRY_AFTER_S,
                )
