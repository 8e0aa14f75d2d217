"""This node while it runs: whether its engines are ready, and its live calls once they are.

The HTTP face reads this one typed object (not a dict of loose keys): calls are refused
with `Overloaded("server_starting")` until the models have loaded, and `/healthz` reports
the loading step or the failure that stopped it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from server.calls.admission import AdmissionGuard
from server.calls.load import LoadMonitor
from server.calls.manager import CallManager
from server.errors import Overloaded
from server.store.memory import MemoryService
from server.store.voices import VoiceStore


@dataclass
class Readiness:
    ready: bool = False
    error: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    # SIGTERM: no new calls; /healthz says 503 "draining" so the load balancer looks away.
    draining: bool = False

    @property
    def status(self) -> str:
        if self.draining:
            return "draining"
        return "ok" if self.ready else ("error" if self.error else "starting")

    @property
    def accepting(self) -> bool:
        """Ready for new calls (what /healthz's 200 means)."""
        return self.ready and not self.draining


@dataclass
class NodeRuntime:
    readiness: Readiness = field(default_factory=Readiness)
    calls: CallManager | None = None
    # The durable memory (conversations, recordings, voices), open once the database is.
    memory: MemoryService | None = None
    voices: VoiceStore | None = None

    def require_memory(self) -> MemoryService:
        if self.memory is None:
            raise Overloaded(
                "server_starting",
                "Hark is still opening its database; retry in a few seconds",
                retry_after_s=2,
            )
        return self.memory

    # GPU memory, engine queues and measured load, checked before a new call (None: none).
    admission: AdmissionGuard | None = None
    # The node's measured load (event-loop lag, pacing slip, CPU); None: not measured.
    load: LoadMonitor | None = None

    def require_calls(self) -> CallManager:
        """The live calls, or `Overloaded` while the engines are still loading."""
        if self.calls is None or not self.readiness.ready:
            raise Overloaded(
                "server_starting",
                "Hark is still loading its models; retry in a few seconds",
                retry_after_s=5,
            )
        return self.calls

    def admit_call(self) -> CallManager:
        """The live calls, if a new one may join now; else `Overloaded` (503)."""
        calls = self.require_calls()
        if self.readiness.draining:
            raise Overloaded(
                "server_draining",
                "This node is shutting down and takes no new calls; retry (another node will)",
                retry_after_s=1,
            )
        if self.admission is not None:
            self.admission.check(live_calls=len(calls))
        return calls

    @property
    def live_calls(self) -> int:
        return len(self.calls) if self.calls is not None else 0
