"""How late the paced outbound frames go out, across every track of this process.

Each `OutboundAudioTrack` notes how far behind its own 20 ms schedule it was when a frame
was due (`note`); the node's load monitor reads and resets the worst slip and the count
of frames over a budget once per tick (`take`). One shared tally, not a list per frame:
noting costs a comparison, read at any load.
"""

from __future__ import annotations

from dataclasses import dataclass

# A frame later than this counts as slipped (two frames: a client's jitter buffer
# absorbs less without a glitch).
SLIP_BUDGET_S = 0.04


@dataclass
class PacingReading:
    """What the tracks did since the last reading."""

    frames: int  # frames sent
    slipped: int  # frames later than SLIP_BUDGET_S
    worst_s: float  # the latest frame's slip


class PacingSlip:
    """The worst lateness and the count of late frames since the last `take()`."""

    def __init__(self) -> None:
        self._frames = 0
        self._slipped = 0
        self._worst = 0.0

    def note(self, late_s: float) -> None:
        """A frame went out `late_s` behind its slot (negative or 0: on time)."""
        self._frames += 1
        if late_s > SLIP_BUDGET_S:
            self._slipped += 1
        if late_s > self._worst:
            self._worst = late_s

    def take(self) -> PacingReading:
        reading = PacingReading(self._frames, self._slipped, self._worst)
        self._frames = self._slipped = 0
        self._worst = 0.0
        return reading


# Every track of the process notes here unless given its own tally (tests).
PACING = PacingSlip()
