"""Open N real WebRTC calls to a Hark server, print how many connected, then wait to be killed.

The leak test SIGKILLs this process: its calls' clients vanish without a hang-up, a DTLS
close or an SCTP abort, as a phone does when it loses its network. The server must notice
on its own (no audio: idle timeout; no ICE consent: connection failed).

    python -m tests.vanishing_clients URL API_KEY N
"""

from __future__ import annotations

import asyncio
import json
import sys

from tests.server_process import ServerProcess
from tests.trust_cluster import make_offer, open_call

BATCH = 5


async def connect_one(node: ServerProcess, key: str) -> str:
    from aiortc import RTCSessionDescription

    pc, offer = await make_offer()
    status, _, answer = await open_call(node, key, offer)
    if status != 201:
        return f"http_{status}"
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    for _ in range(100):
        if pc.connectionState == "connected":
            return "connected"
        await asyncio.sleep(0.1)
    return pc.connectionState


async def main(url: str, key: str, count: int) -> None:
    node = ServerProcess(url, key, 0, None, None)  # type: ignore[arg-type]
    outcomes: dict[str, int] = {}
    for start in range(0, count, BATCH):
        results = await asyncio.gather(
            *(connect_one(node, key) for _ in range(min(BATCH, count - start)))
        )
        for result in results:
            outcomes[result] = outcomes.get(result, 0) + 1
    print(f"connected {outcomes.get('connected', 0)} {json.dumps(outcomes)}", flush=True)
    await asyncio.sleep(3600)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
