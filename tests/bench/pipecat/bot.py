"""Pipecat as the benchmark's peer: SmallWebRTC, Silero, faster-whisper, llama.cpp, Piper.

Runs inside .bench/pipecat-venv (tests/bench/pipecat/setup.sh), never in Hark's venv:

    .bench/pipecat-venv/bin/python tests/bench/pipecat/bot.py --port 7860 \
        --llm-url http://127.0.0.1:8000/v1 --whisper-model DIR --piper-voice FILE.onnx

The pipeline is Pipecat's standard cascade with its defaults for turn-taking: Silero VAD
in the user aggregator, the default turn strategies (VAD + transcription start the
user's turn and interrupt the bot; Smart Turn v3 on ONNX/CPU ends it) and interruptions
on. The engines are Hark's: Whisper tiny.en and the joe voice from the same packages,
Gemma-3-270M behind llama.cpp's OpenAI-compatible server with Hark's persona and few-shot
examples as chat messages.

HTTP, as in Pipecat's SmallWebRTC examples: `POST /api/offer` {sdp, type} → {sdp, type,
pc_id}. Three additions for the benchmark, none of which changes the pipeline:
`DELETE /api/calls/{pc_id}` hangs up (aiortc would notice a closed peer only ~30 s later);
`GET /api/events/{pc_id}` returns what an observer saw (user transcripts, interruptions,
LLM responses starting, bot speech start/stop) stamped with `time.monotonic()`, the
machine-wide clock the client uses; `GET /api/health` is 200 once the models are loaded.
Models are loaded once and shared by all calls, as a deployment would.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import sys
import time
from pathlib import Path
from typing import Any

import pipecat.services.piper.tts as piper_tts
import pipecat.services.whisper.stt as whisper_stt
from aiohttp import web
from loguru import logger
from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    InterruptionFrame,
    LLMFullResponseStartFrame,
    TranscriptionFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)
from pipecat.observers.base_observer import BaseObserver, FramePushed
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.runner import PipelineRunner
from pipecat.pipeline.task import PipelineParams, PipelineTask
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import (
    LLMContextAggregatorPair,
    LLMUserAggregatorParams,
)
from pipecat.services.openai.llm import OpenAILLMService
from pipecat.services.piper.tts import PiperTTSService
from pipecat.services.whisper.stt import WhisperSTTService
from pipecat.transcriptions.language import Language
from pipecat.transports.base_transport import TransportParams
from pipecat.transports.smallwebrtc.connection import SmallWebRTCConnection
from pipecat.transports.smallwebrtc.transport import SmallWebRTCTransport

# Hark's default persona and few-shot examples (server/config.py, server/engines/prompt.py).
INSTRUCTIONS = "You are Hark, a friendly voice assistant. Answer in one or two short sentences."
FEW_SHOT = (
    ("Hi there!", "Hello! How can I help you today?"),
    (
        "What is the tallest mountain in the world?",
        "Mount Everest is the tallest mountain in the world.",
    ),
    ("How many days are in a week?", "There are seven days in a week."),
    ("Who wrote Romeo and Juliet?", "William Shakespeare wrote Romeo and Juliet."),
    ("What do bees make?", "Bees make honey from the nectar of flowers."),
    ("Can you recommend a good hobby?", "Gardening is relaxing, and you get fresh vegetables!"),
)

WATCHED = {
    TranscriptionFrame: "transcript",
    InterruptionFrame: "interruption",
    LLMFullResponseStartFrame: "llm_response_start",
    BotStartedSpeakingFrame: "bot_started_speaking",
    BotStoppedSpeakingFrame: "bot_stopped_speaking",
    UserStartedSpeakingFrame: "user_started_speaking",
    UserStoppedSpeakingFrame: "user_stopped_speaking",
}


class EventLog(BaseObserver):
    """Records the first push of each watched frame, with the machine's monotonic clock."""

    def __init__(self) -> None:
        super().__init__(observe_every_push=False)
        self.events: list[dict[str, Any]] = []

    async def on_push_frame(self, data: FramePushed) -> None:
        name = WATCHED.get(type(data.frame))
        if name is None:
            return
        event: dict[str, Any] = {"t": time.monotonic(), "type": name}
        if isinstance(data.frame, TranscriptionFrame):
            event["text"] = data.frame.text
        self.events.append(event)


def share_models(cpu_threads: int) -> None:
    """Load each model once per process instead of once per call (Pipecat's services
    construct their model in __init__); the services themselves are unchanged."""
    whisper_model = whisper_stt.WhisperModel
    voice_class = piper_tts.PiperVoice

    @functools.cache
    def cached_whisper(name: str, device: str = "auto", compute_type: str = "default"):
        return whisper_model(
            name, device=device, compute_type=compute_type, cpu_threads=cpu_threads
        )

    class CachedPiperVoice:
        load = staticmethod(functools.cache(voice_class.load))

    whisper_stt.WhisperModel = cached_whisper
    piper_tts.PiperVoice = CachedPiperVoice


class Bot:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.logs: dict[str, EventLog] = {}
        self.connections: dict[str, SmallWebRTCConnection] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.ready = False

    def services(self) -> tuple[WhisperSTTService, OpenAILLMService, PiperTTSService]:
        voice = Path(self.args.piper_voice)
        stt = WhisperSTTService(
            device="cpu",
            compute_type="int8",
            settings=WhisperSTTService.Settings(
                model=str(self.args.whisper_model), language=Language.EN
            ),
        )
        llm = OpenAILLMService(
            base_url=self.args.llm_url,
            api_key="none",
            settings=OpenAILLMService.Settings(
                model=self.args.llm_model,
                temperature=0.6,
                top_p=0.9,
                max_tokens=60,
                # The base model continues the chat transcript; a new line is a new turn.
                extra={"stop": ["\n", "USER:", "Q:"]},
            ),
        )
        tts = PiperTTSService(
            download_dir=voice.parent, settings=PiperTTSService.Settings(voice=voice.stem)
        )
        return stt, llm, tts

    async def load(self) -> None:
        """Build one set of services so every model is loaded before the first call."""
        await asyncio.to_thread(self.services)
        await asyncio.to_thread(SileroVADAnalyzer)
        self.ready = True
        logger.info("models loaded; ready")

    async def run_call(self, connection: SmallWebRTCConnection, log: EventLog) -> None:
        transport = SmallWebRTCTransport(
            webrtc_connection=connection,
            params=TransportParams(audio_in_enabled=True, audio_out_enabled=True),
        )
        stt, llm, tts = self.services()
        messages: list[dict[str, str]] = [{"role": "system", "content": INSTRUCTIONS}]
        for question, answer in FEW_SHOT:
            messages += [
                {"role": "user", "content": question},
                {"role": "assistant", "content": answer},
            ]
        context = LLMContext(messages=messages)  # type: ignore[arg-type]
        aggregators = LLMContextAggregatorPair(
            context, user_params=LLMUserAggregatorParams(vad_analyzer=SileroVADAnalyzer())
        )
        pipeline = Pipeline(
            [
                transport.input(),
                stt,
                aggregators.user(),
                llm,
                tts,
                transport.output(),
                aggregators.assistant(),
            ]
        )
        task = PipelineTask(
            pipeline,
            params=PipelineParams(),
            observers=[log],
            enable_rtvi=False,
            idle_timeout_secs=None,
        )

        @transport.event_handler("on_client_disconnected")
        async def on_disconnected(_transport: Any, _client: Any) -> None:
            await task.cancel()

        await PipelineRunner(handle_sigint=False).run(task)
        logger.info(f"call {connection.pc_id} ended")

    async def offer(self, request: web.Request) -> web.Response:
        body = await request.json()
        connection = SmallWebRTCConnection(ice_servers=[])
        await connection.initialize(sdp=body["sdp"], type=body.get("type", "offer"))
        answer = connection.get_answer()
        log = EventLog()
        self.logs[answer["pc_id"]] = log
        self.connections[answer["pc_id"]] = connection
        task = asyncio.create_task(self.run_call(connection, log))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return web.json_response(answer)

    async def hangup(self, request: web.Request) -> web.Response:
        """aiortc cannot tell that the remote peer closed until ICE consent fails (~30 s);
        the client says so, so no call outlives its trial."""
        connection = self.connections.pop(request.match_info["pc_id"], None)
        if connection is not None:
            await connection.disconnect()
        return web.Response(status=204)

    async def events(self, request: web.Request) -> web.Response:
        log = self.logs.get(request.match_info["pc_id"])
        if log is None:
            raise web.HTTPNotFound(text="unknown pc_id")
        return web.json_response(log.events)

    async def health(self, _request: web.Request) -> web.Response:
        return web.json_response({"ready": self.ready}, status=200 if self.ready else 503)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--llm-url", required=True)
    parser.add_argument("--llm-model", default="gemma")
    parser.add_argument("--whisper-model", required=True, help="CTranslate2 Whisper directory")
    parser.add_argument("--piper-voice", required=True, help="the voice's .onnx (config beside)")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args()
    logger.remove()
    logger.add(sys.stderr, level=args.log_level)
    logging.basicConfig(level=logging.WARNING)
    share_models(cpu_threads=2)  # as Hark's Whisper
    bot = Bot(args)
    app = web.Application()
    app.router.add_post("/api/offer", bot.offer)
    app.router.add_get("/api/events/{pc_id}", bot.events)
    app.router.add_delete("/api/calls/{pc_id}", bot.hangup)
    app.router.add_get("/api/health", bot.health)

    async def load_models(_app: web.Application) -> None:
        bot.tasks.add(asyncio.get_running_loop().create_task(bot.load()))

    app.on_startup.append(load_models)
    web.run_app(app, host=args.host, port=args.port, print=None)


if __name__ == "__main__":
    main()
