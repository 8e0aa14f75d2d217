"""Hark as a benchmark peer: the OpenAI Realtime WebRTC protocol through `CallClient`.

The call mints an `ek_` client secret with the API key, posts its SDP offer to
`/v1/realtime/calls` and listens on `oai-events`; the benchmark's microphone and
recorder replace CallClient's own. Signals come from the events: committed transcripts
(`…input_audio_transcription.completed`), `response.created`, `response.done` with
status `cancelled`, and `barge_in_stop_ms` wherever a `hark.metrics` event carries it
(missing means null: older servers do not measure it). A call whose microphone hears
its own speaker (the echo scenarios) says nothing about it, as a client that does not
know would: it gets the server's default (`echo_guard: "auto"`), unless its session
names a mode (`--hark-session`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from server.tools.call_client import CallClient, mint_client_secret
from tests.acoustic import ReplyRecorder, ScriptedMicrophone
from tests.bench.peers.base import Signals


def find_number(data: Any, key: str) -> float | None:
    """The first numeric `key` anywhere in a nested event."""
    if isinstance(data, dict):
        value = data.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        children = data.values()
    elif isinstance(data, list):
        children = data
    else:
        return None
    for child in children:
        found = find_number(child, key)
        if found is not None:
            return found
    return None


class HarkCall:
    def __init__(self, client: CallClient, mic: ScriptedMicrophone, ear: ReplyRecorder) -> None:
        self.client = client
        self.mic = mic
        self.ear = ear

    async def signals(self) -> Signals:
        signals = Signals()
        created: dict[str, float] = {}
        for event in self.client.events:
            kind, data = event.type, event.data
            if kind.endswith("input_audio_transcription.completed"):
                signals.transcripts.append((event.at, str(data.get("transcript", ""))))
            elif kind == "response.created":
                signals.responses.append(event.at)
                created[str(data.get("response", {}).get("id"))] = event.at
            elif kind == "response.done" and data.get("response", {}).get("status") == "cancelled":
                started = created.get(str(data["response"].get("id")), event.at)
                signals.cancels.append((event.at, started))
            elif kind == "hark.metrics":
                if isinstance(data.get("turn"), dict):
                    signals.metrics.append(data["turn"])
                stop = find_number(data, "barge_in_stop_ms")
                if stop is not None:
                    signals.barge_in_stop_ms.append((event.at, stop))
            if kind not in ("response.output_audio_transcript.delta",):
                signals.raw.append({"t": event.at, "type": kind})
        return signals

    async def hangup(self) -> None:
        await self.client.hangup()


class HarkPeer:
    name = "hark"

    def __init__(
        self, url: str | None = None, api_key: str = "", session: dict[str, Any] | None = None
    ) -> None:
        self.url = url
        self.api_key = api_key
        self.session = session or {}
        self.info: dict[str, Any] = {"session": self.session}

    @contextlib.contextmanager
    def running(self) -> Iterator[HarkPeer]:
        """Start a server on the embedded defaults, unless a URL was given."""
        if self.url:
            yield self
            return
        from tests.server_process import running_server

        with running_server() as server:
            self.url, self.api_key = server.url, server.api_key
            try:
                yield self
            finally:
                self.url = None

    async def call(self, mic: ScriptedMicrophone) -> HarkCall:
        assert self.url, "HarkPeer.call() outside running()"
        token = await mint_client_secret(self.url, self.api_key, self.session)
        client = CallClient(self.url, token)
        ear = ReplyRecorder()
        client.mic.stop()
        client.mic = mic  # type: ignore[assignment]  # any paced audio track will do
        client.recorder = ear  # type: ignore[assignment]  # same add(pcm) interface
        await client.connect()
        return HarkCall(client, mic, ear)
