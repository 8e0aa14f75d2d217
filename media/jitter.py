"""A shorter receive delay for aiortc audio: prefetch 1 packet instead of 4.

aiortc's RTCRtpReceiver holds every audio packet until four later packets have arrived
(`JitterBuffer(capacity=16, prefetch=4)`), so each received frame reaches `track.recv()`
80 ms after its packet. There is no playout clock behind it: the prefetch neither smooths
jitter nor is needed to reorder (a gap already holds frames back until it fills), so for
a consumer that reads frames as they arrive (the server's VAD, a recording test client)
it is pure delay. With prefetch 1 a frame is released when the next packet shows it is
complete: 20 ms. tests/bench/transport_latency.py measures both.

The buffer is a private attribute of RTCRtpReceiver (aiortc 1.16), so this checks what it
replaces and leaves the receiver alone, with a warning, if aiortc changes.
"""

from __future__ import annotations

import logging

from aiortc import RTCPeerConnection
from aiortc.jitterbuffer import JitterBuffer

log = logging.getLogger(__name__)

_BUFFER = "_RTCRtpReceiver__jitter_buffer"
_KIND = "_RTCRtpReceiver__kind"
AUDIO_CAPACITY = 16  # aiortc's own: 320 ms of 20 ms packets


def shorten_audio_receive_delay(pc: RTCPeerConnection, prefetch: int = 1) -> int:
    """Give every audio receiver of `pc` a jitter buffer with `prefetch` packets.

    Call it after the remote description is set (the receivers exist) and before media
    flows; a buffer that already holds packets is left alone. Returns how many receivers
    were changed.
    """
    if not 0 <= prefetch < AUDIO_CAPACITY:
        raise ValueError(f"prefetch must be in [0, {AUDIO_CAPACITY}), got {prefetch}")
    changed = 0
    for receiver in pc.getReceivers():
        if getattr(receiver, _KIND, None) != "audio":
            continue
        current = getattr(receiver, _BUFFER, None)
        if not isinstance(current, JitterBuffer):
            log.warning("aiortc's RTCRtpReceiver changed; audio receive delay left as is")
            continue
        if getattr(current, "_origin", None) is not None:
            continue  # packets already buffered: swapping now would drop them
        setattr(receiver, _BUFFER, JitterBuffer(capacity=AUDIO_CAPACITY, prefetch=prefetch))
        changed += 1
    return changed
