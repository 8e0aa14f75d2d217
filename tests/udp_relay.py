"""A lossy, slow UDP relay for putting known impairment on a real WebRTC call's path.

`tc netem` is not available here, so the call's packets are routed through this relay
instead: the SDP offer's candidates are rewritten to the relay's server-facing socket and
the answer's to its client-facing socket, so each peer believes the relay is the other
peer, and every packet (STUN, DTLS, SRTP, SRTCP) really passes through it. One socket per
peer, one direction each way:

    client ──▶ [client side] ──delay, drop──▶ [server side] ──▶ server
    client ◀── [client side] ◀──delay, drop── [server side] ◀── server

Only RTP media packets are dropped (RFC 7983: first byte 128..191, and not an RTCP
packet type), so the handshake and the RTCP reports that carry the measurements survive;
everything is delayed. The relay counts what it forwarded and dropped per direction, so a
test compares what Hark reports with what really happened. It runs its own event loop in a
thread so the call's own work in the test's loop cannot skew the delay.
"""

from __future__ import annotations

import asyncio
import random
import re
import socket
import threading
from dataclasses import dataclass, field

_CANDIDATE = re.compile(
    r"^a=candidate:(\S+) (\d+) (udp|UDP) (\d+) (\S+) (\d+) typ host(.*)$", re.MULTILINE
)


def local_ipv4() -> str:
    """This machine's own interface address (aioice ignores 127.0.0.1)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))  # no packet is sent: this only picks a route
        return str(probe.getsockname()[0])


def is_rtp_media(data: bytes) -> bool:
    return len(data) >= 2 and 128 <= data[0] <= 191 and not 192 <= data[1] <= 223


@dataclass
class DirectionStats:
    rtp: int = 0
    rtp_dropped: int = 0
    other: int = 0

    @property
    def loss_pct(self) -> float:
        return 100 * self.rtp_dropped / self.rtp if self.rtp else 0.0


@dataclass
class Impairment:
    loss: float = 0.0  # fraction of RTP packets dropped, each direction
    delay_ms: float = 0.0  # added one way, each direction
    jitter_ms: float = 0.0  # extra uniform random delay 0..jitter_ms, order preserved
    seed: int = 1


class _Side(asyncio.DatagramProtocol):
    def __init__(self, relay: UdpRelay, name: str) -> None:
        self.relay = relay
        self.name = name
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.relay._forward(self.name, data)


@dataclass
class UdpRelay:
    host: str
    impairment: Impairment = field(default_factory=Impairment)
    to_server: DirectionStats = field(default_factory=DirectionStats)
    to_client: DirectionStats = field(default_factory=DirectionStats)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.impairment.seed)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._sides: dict[str, _Side] = {}
        self._last_due = {"client": 0.0, "server": 0.0}
        self.client_addr: tuple[str, int] | None = None  # the client's real candidate
        self.server_addr: tuple[str, int] | None = None  # the server's real candidate

    # ---- lifecycle ---------------------------------------------------------------------

    def start(self) -> UdpRelay:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._bind(), self._loop).result(5)
        return self

    async def _bind(self) -> None:
        for name in ("client", "server"):
            side = _Side(self, name)
            await self._loop.create_datagram_endpoint(lambda s=side: s, local_addr=(self.host, 0))
            self._sides[name] = side

    def stop(self) -> None:
        def close() -> None:
            for side in self._sides.values():
                if side.transport is not None:
                    side.transport.close()
            self._loop.stop()

        self._loop.call_soon_threadsafe(close)
        self._thread.join(5)

    def address(self, side: str) -> tuple[str, int]:
        transport = self._sides[side].transport
        assert transport is not None
        host, port = transport.get_extra_info("sockname")[:2]
        return str(host), int(port)

    # ---- SDP ---------------------------------------------------------------------------

    def route_offer(self, sdp: str) -> str:
        """The client's offer: the server will see the relay's server side as the client."""
        self.client_addr = self._real_candidate(sdp)
        return self._rewrite(sdp, self.address("server"))

    def route_answer(self, sdp: str) -> str:
        """The server's answer: the client will see the relay's client side as the server."""
        self.server_addr = self._real_candidate(sdp)
        return self._rewrite(sdp, self.address("client"))

    def _real_candidate(self, sdp: str) -> tuple[str, int]:
        for match in _CANDIDATE.finditer(sdp):
            if match.group(5) == self.host and match.group(2) == "1":
                return match.group(5), int(match.group(6))
        raise AssertionError(f"no host candidate on {self.host} in the SDP:\n{sdp}")

    def _rewrite(self, sdp: str, relay: tuple[str, int]) -> str:
        """Every candidate of the SDP becomes one host candidate: the relay's socket."""
        seen: set[int] = set()
        lines: list[str] = []
        section = 0
        for line in sdp.splitlines():
            if line.startswith("m="):
                section += 1
            match = _CANDIDATE.match(line)
            if line.startswith("a=candidate:"):
                # Keep one UDP host candidate on our address per media section.
                if match is None or match.group(5) != self.host or section in seen:
                    continue
                seen.add(section)
                line = (
                    f"a=candidate:{match.group(1)} 1 udp {match.group(4)} "
                    f"{relay[0]} {relay[1]} typ host{match.group(7)}"
                )
            lines.append(line)
        return "\r\n".join(lines) + "\r\n"

    # ---- forwarding --------------------------------------------------------------------

    def _forward(self, arrived_on: str, data: bytes) -> None:
        if arrived_on == "client":
            stats, out, target = self.to_server, self._sides["server"], self.server_addr
        else:
            stats, out, target = self.to_client, self._sides["client"], self.client_addr
        if target is None or out.transport is None:
            return
        if is_rtp_media(data):
            stats.rtp += 1
            if self._rng.random() < self.impairment.loss:
                stats.rtp_dropped += 1
                return
        else:
            stats.other += 1
        imp = self.impairment
        now = self._loop.time()
        due = now + (imp.delay_ms + self._rng.uniform(0, imp.jitter_ms)) / 1000
        due = max(due, self._last_due[arrived_on])  # never reorder
        self._last_due[arrived_on] = due
        transport = out.transport
        if due <= now:
            transport.sendto(data, target)
        else:
            self._loop.call_at(due, transport.sendto, data, target)
