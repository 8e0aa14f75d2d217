"""A bound on aiortc's decoder queue: behind a starved decoder thread, old packets go.

aiortc's RTCRtpReceiver hands every encoded frame to its decoder thread through an
unbounded `queue.Queue` (aiortc 1.16). On a node with more calls than CPU that thread
falls behind and the queue grows without limit, and so does memory. `LatestFrames` keeps
at most `limit` encoded frames waiting and drops the oldest: audio that late is worth
nothing to a live call, and the inbound reader already treats the gap as such.

The queue is a private attribute of the receiver, handed to the decoder thread when the
receiver starts (after DTLS connects), so it is swapped right after the remote
description is set; an aiortc that changed is left alone with a warning.
"""

from __future__ import annotations

import logging
import queue
from typing import Any

from aiortc import RTCPeerConnection

log = logging.getLogger(__name__)

_QUEUE = "_RTCRtpReceiver__decoder_queue"
_THREAD = "_RTCRtpReceiver__decoder_thread"
# One second of 20 ms audio frames.
MAX_DECODER_BACKLOG = 50


class LatestFrames(queue.Queue):  # type: ignore[type-arg]
    """A FIFO that drops its oldest item to stay within `limit` (the end marker, None,
    is never dropped and never counted)."""

    def __init__(self, limit: int = MAX_DECODER_BACKLOG) -> None:
        super().__init__()
        self.limit = limit
        self.dropped = 0

    def _put(self, item: Any) -> None:  # called under the queue's lock
        if item is not None:
            while len(self.queue) >= self.limit and self.queue[0] is not None:
                self.queue.popleft()
                self.dropped += 1
        self.queue.append(item)


def bound_decoder_queues(pc: RTCPeerConnection, limit: int = MAX_DECODER_BACKLOG) -> int:
    """Give every receiver of `pc` not yet started a bounded decoder queue; returns how
    many were changed."""
    changed = 0
    for receiver in pc.getReceivers():
        current = getattr(receiver, _QUEUE, None)
        if type(current) is not queue.Queue:
            if not isinstance(current, LatestFrames):
                log.warning("aiortc's RTCRtpReceiver changed; its decoder queue left unbounded")
            continue
        if getattr(receiver, _THREAD, None) is not None or current.qsize():
            continue  # already decoding: the thread holds the old queue
        setattr(receiver, _QUEUE, LatestFrames(limit))
        changed += 1
    return changed
