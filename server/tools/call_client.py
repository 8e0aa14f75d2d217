"""A headless Realtime WebRTC client: a wav file as the microphone, events printed, reply saved.

It speaks exactly the protocol a browser does (client secret, SDP offer over HTTP,
`oai-events`), so it is what tests, benchmarks and users reach for first. The microphone
is an `OutboundAudioTrack`, so utterances can be queued at any moment (to barge in), and
the moment each one's last voiced sample went out is known for latency measurements.

Received audio is timed when aiortc hands over the decoded frame. aiortc holds each audio
packet until four more have arrived (80 ms) with no playout clock behind it; the client
asks for one (20 ms, media.jitter), close to what a browser's adaptive jitter buffer
settles at on a clean link, so the time measured is the network's, not aiortc's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from media.jitter import shorten_audio_receive_delay
from media.outbound import OutboundAudioTrack
from media.resample import Resampler
from media.wav import read_wav, write_wav

log = logging.getLogger("hark.client")

RATE = 48_000
AUDIBLE_RMS = 300.0  # int16 RMS over a 20 ms frame that counts as sound, not silence


class CallError(RuntimeError):
    pass


@dataclass
class ReceivedEvent:
    at: float  # time.monotonic() of arrival
    data: dict[str, Any]

    @property
    def type(self) -> str:
        return str(self.data.get("type"))


@dataclass
class ReplyRecorder:
    """Collects the received audio with arrival times, to save it and to time it."""

    chunks: list[np.ndarray] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    levels: list[float] = field(default_factory=list)

    def add(self, pcm: np.ndarray) -> None:
        self.chunks.append(pcm)
        self.times.append(time.monotonic())
        self.levels.append(float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2))) if len(pcm) else 0)

    def audio(self) -> np.ndarray:
        return np.concatenate(self.chunks) if self.chunks else np.zeros(0, dtype=np.int16)

    def first_audible_after(self, t: float) -> float | None:
        for at, level in zip(self.times, self.levels, strict=True):
            if at >= t and level >= AUDIBLE_RMS:
                return at
        return None

    def last_audible(self) -> float | None:
        for at, level in zip(reversed(self.times), reversed(self.levels), strict=True):
            if level >= AUDIBLE_RMS:
                return at
        return None

    def audible_ms_between(self, start: float, end: float) -> int:
        frames = sum(
            1
            for at, level in zip(self.times, self.levels, strict=True)
            if start <= at < end and level >= AUDIBLE_RMS
        )
        return frames * 20


def last_voiced_ms(pcm: np.ndarray, rate: int) -> float:
    """Where the last audible 20 ms frame of `pcm` ends, in ms from its start."""
    step = rate // 50
    for end in range(len(pcm), 0, -step):
        frame = pcm[max(0, end - step) : end].astype(np.float64)
        if np.sqrt(np.mean(frame**2)) >= AUDIBLE_RMS:
            return end * 1000 / rate
    return 0.0


async def mint_client_secret(
    base_url: str, api_key: str, session: dict[str, Any] | None = None, sub: str | None = None
) -> str:
    body: dict[str, Any] = {"session": session or {}}
    if sub is not None:
        body["sub"] = sub
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{base_url}/v1/realtime/client_secrets",
            json=body,
            headers={"Authorization": f"Bearer {api_key}"},
        ) as resp:
            body = await resp.json()
            if resp.status != 200:
                raise CallError(f"minting a client secret failed ({resp.status}): {body}")
            return str(body["value"])


SdpFilter = Callable[[str], str]


class CallClient:
    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        offer_filter: SdpFilter | None = None,
        answer_filter: SdpFilter | None = None,
        receive_prefetch: int | None = 1,
        calls_path: str = "/v1/realtime/calls",
    ) -> None:
        """`receive_prefetch`: aiortc audio packets held before a frame is released
        (None keeps aiortc's 4); `calls_path`: where the offer goes (translation calls:
        /v1/realtime/translations/calls)."""
        self.calls_path = calls_path
        self.base_url = base_url.rstrip("/")
        self.receive_prefetch = receive_prefetch
        self.token = token
        # Rewrite the SDP on its way out and in (tests route media through a relay).
        self._offer_filter = offer_filter or (lambda sdp: sdp)
        self._answer_filter = answer_filter or (lambda sdp: sdp)
        self.mic = OutboundAudioTrack()
        self.recorder = ReplyRecorder()
        self.events: list[ReceivedEvent] = []
        self.call_path: str | None = None
        self.on_event: Callable[[ReceivedEvent], None] | None = None
        self._pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self._channel: Any = None
        self._waiters: list[asyncio.Future[None]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._utterances = 0

    async def connect(self, timeout: float = 20.0) -> None:
        pc = self._pc
        pc.addTrack(self.mic)
        self._channel = pc.createDataChannel("oai-events")
        self._channel.on("message", self._on_message)
        pc.on("track", self._on_track)
        await pc.setLocalDescription(await pc.createOffer())
        if self.receive_prefetch is not None:
            shorten_audio_receive_delay(pc, self.receive_prefetch)
        async with aiohttp.ClientSession() as http:
            async with http.post(
                f"{self.base_url}{self.calls_path}",
                data=self._offer_filter(pc.localDescription.sdp),
                headers={
                    "Authorization": f"Bearer {self.token}",
                    "Content-Type": "application/sdp",
                },
            ) as resp:
                text = await resp.text()
                if resp.status != 201:
                    raise CallError(f"the server refused the call ({resp.status}): {text}")
                self.call_path = resp.headers["Location"]
        answer = self._answer_filter(text)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        await self.wait_for("session.created", timeout=timeout)

    @property
    def call_id(self) -> str:
        return (self.call_path or "").rsplit("/", 1)[-1]

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio":
            self._tasks.append(asyncio.create_task(self._record(track)))

    async def _record(self, track: MediaStreamTrack) -> None:
        resampler = Resampler(RATE)
        with contextlib.suppress(MediaStreamError, asyncio.CancelledError):
            while True:
                self.recorder.add(resampler.frame(await track.recv()))

    def _on_message(self, raw: str | bytes) -> None:
        try:
            data = json.loads(raw)
        except ValueError:
            log.warning("non-JSON event: %r", raw[:200])
            return
        event = ReceivedEvent(time.monotonic(), data)
        self.events.append(event)
        if self.on_event is not None:
            self.on_event(event)
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)

    def send(self, event: dict[str, Any]) -> None:
        self._channel.send(json.dumps(event))

    def types(self) -> list[str]:
        return [event.type for event in self.events]

    async def wait_for(
        self,
        type_: str,
        predicate: Callable[[dict[str, Any]], bool] | None = None,
        *,
        after: int = 0,
        timeout: float = 60.0,
    ) -> ReceivedEvent:
        """The first event of `type_` (matching `predicate`) at index >= `after`."""

        def find() -> ReceivedEvent | None:
            for event in self.events[after:]:
                if event.type == type_ and (predicate is None or predicate(event.data)):
                    return event
            return None

        async def wait() -> ReceivedEvent:
            while (found := find()) is None:
                waiter = asyncio.get_running_loop().create_future()
                self._waiters.append(waiter)
                try:
                    await waiter
                finally:
                    self._waiters.remove(waiter)
            return found

        try:
            return await asyncio.wait_for(wait(), timeout)
        except TimeoutError as exc:
            raise CallError(
                f"no {type_} within {timeout:.0f} s; got {self.types()[after:][-12:]}"
            ) from exc

    async def say(self, pcm: np.ndarray, rate: int) -> float:
        """Queue `pcm` on the microphone now; returns the time its last voiced sample
        will have been sent (for voice-to-voice latency)."""
        self._utterances += 1
        started = asyncio.get_running_loop().create_future()

        def on_start(_: str) -> None:
            if not started.done():
                started.set_result(time.monotonic())

        self.mic.on_playback_started = on_start
        self.mic.begin_response(f"utterance-{self._utterances}")
        self.mic.push(pcm, rate)
        self.mic.end_response()
        start = await started
        return start + last_voiced_ms(pcm, rate) / 1000

    async def finish_saying(self) -> None:
        await self.mic.wait_drained()

    def ask(self, text: str, response: dict[str, Any] | None = None) -> None:
        """Type a user message and ask for a response (with `response.create` options)."""
        self.send(
            {
                "type": "conversation.item.create",
                "item": {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": text}],
                },
            }
        )
        self.respond(response)

    def respond(self, response: dict[str, Any] | None = None) -> None:
        self.send({"type": "response.create", **({"response": response} if response else {})})

    def answer_tool_calls(
        self,
        done: ReceivedEvent,
        output: Callable[[dict[str, Any]], str],
        response: dict[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """Send `output(call)` for each function call `done` (a `response.done`) made,
        then `response.create`, as an app runs its tools; returns the calls."""
        calls = function_calls(done)
        for call in calls:
            self.send(
                {
                    "type": "conversation.item.create",
                    "item": {
                        "type": "function_call_output",
                        "call_id": call["call_id"],
                        "output": output(call),
                    },
                }
            )
        if calls:
            self.respond(response)
        return calls

    async def hangup(self) -> None:
        if self.call_path is not None:
            with contextlib.suppress(aiohttp.ClientError):
                async with aiohttp.ClientSession() as http:
                    await http.delete(
                        f"{self.base_url}{self.call_path}",
                        headers={"Authorization": f"Bearer {self.token}"},
                    )
        await self.close()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        self.mic.stop()
        await self._pc.close()


def function_calls(done: ReceivedEvent) -> list[dict[str, Any]]:
    """The `function_call` items of a `response.done`."""
    output = done.data.get("response", {}).get("output") or []
    return [item for item in output if item.get("type") == "function_call"]


def _describe(event: ReceivedEvent, t0: float) -> str:
    data = event.data
    detail = ""
    for key in ("transcript", "delta", "arguments", "audio_start_ms", "audio_end_ms"):
        if key in data:
            detail = f" {key}={data[key]!r}"
            break
    if event.type == "response.done":
        detail = f" status={data['response']['status']}"
    elif event.type == "error":
        detail = f" {data['error'].get('code')}: {data['error'].get('message')}"
    elif event.type == "hark.metrics":
        detail = " " + json.dumps(data["turn"])
    return f"[{event.at - t0:6.2f}s] {event.type}{detail}"


def _cli_session(args: argparse.Namespace) -> dict[str, Any]:
    """The session `hark call` asks for: instructions, tools from a JSON file, tool_choice,
    the conversation to continue, a persona, recording."""
    session: dict[str, Any] = {}
    if args.instructions:
        session["instructions"] = args.instructions
    if getattr(args, "tools", None):
        with open(args.tools, encoding="utf-8") as file:
            session["tools"] = json.load(file)
    choice = getattr(args, "tool_choice", None)
    if choice:
        named = choice not in ("auto", "none", "required")
        session["tool_choice"] = {"type": "function", "name": choice} if named else choice
    for key, value in (
        ("conversation", getattr(args, "conversation", None)),
        ("persona", getattr(args, "persona", None)),
        ("recording", True if getattr(args, "record", False) else None),
    ):
        if value is not None:
            session[key] = value
    return session


async def run_call_cli(args: argparse.Namespace) -> int:
    if not (args.wav or args.text):
        print("hark call: give --wav FILE or --text 'message'")
        return 2
    token = args.token
    try:
        session = _cli_session(args)
    except (OSError, ValueError) as exc:
        print(f"hark call: {exc}")
        return 2
    if not token:
        if not args.api_key:
            print("hark call: give --api-key (or HARK_API_KEY) or --token ek_…")
            return 2
        token = await mint_client_secret(
            args.url, args.api_key, session, getattr(args, "sub", None)
        )
    client = CallClient(args.url, token)
    t0 = time.monotonic()
    client.on_event = lambda event: print(_describe(event, t0), flush=True)
    try:
        await client.connect()
        created = client.events[0].data.get("session", {}) if client.events else {}
        if created.get("conversation"):
            print(f"conversation: {created['conversation']} (continue it with --conversation)")
        mark = len(client.events)
        if args.wav:
            try:
                pcm, rate = read_wav(args.wav)
            except (OSError, ValueError, EOFError) as exc:
                raise CallError(f"cannot read {args.wav}: {exc}") from exc
            speech_end = await client.say(pcm, rate)
        else:
            client.send(
                {
                    "type": "conversation.item.create",
                    "item": {
                        "type": "message",
                        "role": "user",
                        "content": [{"type": "input_text", "text": args.text}],
                    },
                }
            )
            client.send({"type": "response.create"})
            speech_end = time.monotonic()
        done = await client.wait_for("response.done", after=mark, timeout=args.timeout)
        if getattr(args, "tool_output", None) is not None and function_calls(done):
            mark = len(client.events)
            client.answer_tool_calls(done, lambda call: args.tool_output)
            done = await client.wait_for("response.done", after=mark, timeout=args.timeout)
        with contextlib.suppress(CallError):
            await client.wait_for("output_audio_buffer.stopped", after=mark, timeout=2)
        await asyncio.sleep(0.3)  # the last frames in flight
        first_audio = client.recorder.first_audible_after(speech_end)
        write_wav(args.out, client.recorder.audio(), RATE)
        print(f"saved the received audio to {args.out}")
        if first_audio is not None:
            print(f"voice-to-voice: {(first_audio - speech_end) * 1000:.0f} ms")
        return 0 if done.data["response"]["status"] == "completed" else 1
    except CallError as exc:
        print(f"hark call: {exc}")
        return 1
    finally:
        await client.hangup()
