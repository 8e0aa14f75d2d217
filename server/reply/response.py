"""One assistant response: the LLM's text and tool calls → output items → (speech) → track.

The LLM writes into a clause splitter; a spoken reply's clauses are synthesized as soon
as each is complete (`server.reply.speech`) and queued on the track while the LLM is
still writing. A spoken response lasts until its audio has been played: barge-in at any
point cancels it, and the item keeps only the heard text. A written one (`["text"]`)
streams `response.output_text.delta` and never touches the track. Tool calls become
`function_call` items (`server.reply.output_items`) and are never spoken.

A run may start *held* (a speculative reply, begun while the user's pause is not yet the
end of the turn): it generates and synthesizes as usual, but what it would show and
play waits until `release()`, and `discard()` drops it without a trace. The client
never sees a held run that was discarded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any, Literal

import numpy as np

from media.outbound import OutboundAudioTrack
from server.engines.base import LanguageModel, TextToSpeech
from server.engines.chat import LLMFinish, ToolCallDelta
from server.engines.faults import APOLOGY, Clip, EngineFault, as_fault
from server.protocol import events
from server.protocol import response_events as rev
from server.protocol.conversation import Conversation, Item
from server.reply.heard_text import HeardText
from server.reply.output_items import Effect, ResponseOutput
from server.reply.sentences import SentenceSplitter
from server.reply.spec import ReplySpec
from server.reply.speech import ClauseSpeaker
from server.turns.timings import TurnTimings, now

log = logging.getLogger("hark.response")

Emit = Callable[[dict[str, Any]], None]
CancelReason = Literal["turn_detected", "client_cancelled"]


class ResponseRun:
    def __init__(
        self,
        *,
        response_id: str,
        conversation: Conversation,
        llm: LanguageModel,
        tts: TextToSpeech,
        track: OutboundAudioTrack,
        emit: Emit,
        spec: ReplySpec,
        timings: TurnTimings,
        on_finished: Callable[[ResponseRun], None],
        held: bool = False,
        apology: Clip | None = None,
        first_words: int = 0,
    ) -> None:
        """`apology`: said if the TTS itself fails (else the TTS says it); `first_words`:
        the first chunk may go to the TTS after that many words (`SentenceSplitter`)."""
        self.id = response_id
        self.spec = spec
        self.item = Item(
            id=events.new_id("item"),
            role="assistant",
            kind="output_audio" if spec.spoken else "output_text",
            text=None,
            status="in_progress",
        )
        self.timings = timings
        self.status: str = "in_progress"
        self.reason: str | None = None  # why cancelled (CancelReason), or the fault's code
        self.fault: EngineFault | None = None
        self._apology = apology
        self._first_words = first_words
        self._tts = tts
        self.audio_cut = False  # its audio was playing when it was cancelled
        self._llm = llm
        self._track = track
        self._emit = emit
        self._on_finished = on_finished
        self._heard = HeardText()
        self._task: asyncio.Task[None] | None = None
        self._stopped_by: str | None = None  # LLMFinish's reason
        self.output = ResponseOutput(
            spec.shape(response_id), self.item, conversation, emit, self._do
        )
        self._speaker = (
            ClauseSpeaker(
                tts, voice=spec.voice, speed=spec.speed, heard=self._heard, timings=timings,
                play=self._play, audio_ahead=self._audio_ahead,
            )
            if spec.spoken
            else None
        )  # fmt: skip
        # A held run keeps what it would show and play until it is released.
        self._held = held
        self._released = asyncio.Event()
        self._held_effects: list[Effect] = []
        self._held_audio: list[tuple[np.ndarray, int]] = []
        self._held_failed = False
        if not held:
            self._released.set()

    @property
    def active(self) -> bool:
        return self.status == "in_progress"

    @property
    def held(self) -> bool:
        """Speculative and not yet released: nothing of it has reached the client."""
        return self._held

    @property
    def spoken(self) -> HeardText:
        return self._heard

    @property
    def speaks(self) -> bool:
        """Its audio goes to the track (an `["audio"]` response)."""
        return self.spec.spoken

    @property
    def tool_calls(self) -> list[Item]:
        return self.output.calls

    def start(self) -> None:
        if not self._held:
            self._open()
        self.timings.response_start = now()
        self._task = asyncio.create_task(self._run(), name=f"response-{self.id}")

    def _open(self) -> None:
        self._emit(rev.response_created(self.output.shape))

    def release(self) -> bool:
        """A held run becomes the response: what it has so far goes out now and the rest
        as it comes. False (and nothing sent) if it failed or was discarded."""
        if not self._held or not self.active or self._held_failed:
            return False
        self._held = False
        self._open()
        for effect in self._held_effects:
            effect()
        for pcm, rate in self._held_audio:
            self._track.push(pcm, rate)
        self._held_effects.clear()
        self._held_audio.clear()
        self._released.set()
        return True

    def adopt_turn(self, turn: TurnTimings) -> bool:
        """Take the stamps of the turn this held run turned out to answer."""
        if not self._held:
            return False
        self.timings.adopt_turn(turn)
        return True

    def discard(self) -> None:
        """Drop a held run silently: the turn it guessed did not end there."""
        if not self._held or not self.active:
            return
        self.status = "discarded"
        if self._task is not None:
            self._task.cancel()

    def _do(self, effect: Effect) -> None:
        if self._held:
            self._held_effects.append(effect)
        else:
            effect()

    def _play(self, pcm: np.ndarray, rate: int) -> None:
        if self._held:
            self._held_audio.append((pcm, rate))
        else:
            self._track.push(pcm, rate)

    def _audio_ahead(self) -> float:
        """Seconds of this reply's audio played to no one yet: queued on the track, or
        held with a speculative run."""
        if self._held:
            return sum(len(pcm) / rate for pcm, rate in self._held_audio)
        return self._track.queued_ms / 1000 if self._on_track else 0.0

    @property
    def _on_track(self) -> bool:
        return self.speaks and self._track.response_id == self.id

    def cancel(self, reason: CancelReason, *, report_clear: bool = False) -> None:
        """Stop at once: silence the track, stop LLM and TTS, keep only the heard text.
        `output_audio_buffer.cleared` is sent if audio had started, or always with
        `report_clear` (the client asked to clear the buffer)."""
        if self._held:
            self.discard()
            return
        if not self.active:
            return
        self.audio_cut = self.timings.first_frame_sent is not None
        played_ms = self._track.client_played_ms if self._on_track else 0
        if self._on_track:
            self._track.clear()
        if self.speaks and (self.audio_cut or report_clear):
            self._emit(events.output_audio_buffer("cleared", self.id))
        heard = self._heard.heard(played_ms) if self.speaks else self._heard.text
        self._finish("cancelled", heard, reason=reason)
        if self._task is not None:
            self._task.cancel()

    async def wait(self) -> None:
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        try:
            await self._generate()
            await self._released.wait()
            if self._on_track:
                self._track.end_response()
                await self._track.wait_drained()
            limited = self._stopped_by == "length" and self.spec.request.max_tokens is not None
            text = self._heard.heard(self._heard.audio_ms) if self.speaks else self._heard.text
            if limited:
                self._finish("incomplete", text, reason="max_output_tokens")
            else:
                self._finish("completed", text)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            fault = as_fault(exc, "llm")
            log.warning("response %s failed: %s: %s", self.id, fault.code, fault.message)
            if self._held:
                self._held_failed = True  # never seen: the turn's end starts a fresh one
                return
            await self._fail(fault)

    async def _fail(self, fault: EngineFault) -> None:
        """An engine failed: tell the client and end the response as failed, a spoken one
        after saying the apology behind what was already queued (through the TTS, or the
        clip made at start-up if the TTS is what failed). The next turn tries again."""
        self.fault = fault
        self._emit(events.error("server_error", fault.code, f"Response failed: {fault.message}"))
        if not self.speaks:
            self._finish("failed", self._heard.text, reason=fault.code)
            return
        spoken = await self._apology_audio(fault)
        self._heard = self._heard.only_spoken()  # text the LLM wrote but no one said: gone
        if spoken is not None:
            self.output.open_message(self._begin_audio)  # the track, if nothing was said yet
        if spoken is not None and self._track.response_id == self.id:
            pcm, rate = spoken
            delta = (" " if self._heard.text else "") + APOLOGY
            self._heard.add_text(delta)
            self.output.text(delta)
            self._heard.add_audio(self._heard.locate(APOLOGY), len(pcm) * 1000 / rate)
            self._play(pcm, rate)
        if self._on_track:
            self._track.end_response()
            await self._track.wait_drained()
        self._finish("failed", self._heard.heard(self._heard.audio_ms), reason=fault.code)

    async def _apology_audio(self, fault: EngineFault) -> tuple[np.ndarray, int] | None:
        if fault.stage != "tts":
            try:
                audio = self._tts.synthesize(APOLOGY, self.spec.voice, self.spec.speed)
                async with contextlib.aclosing(audio) as out:
                    chunks = [pcm async for pcm in out]
                if chunks:
                    return np.concatenate(chunks), self._tts.sample_rate
            except Exception:
                log.warning("response %s: the TTS failed too; the stored apology", self.id)
        if self._apology is None:
            return None
        return self._apology.pcm, self._apology.sample_rate

    async def _generate(self) -> None:
        clauses: asyncio.Queue[str | None] = asyncio.Queue()
        writer = asyncio.create_task(self._write(clauses), name=f"llm-{self.id}")
        try:
            if self._speaker is not None:
                await self._speaker.speak(clauses)
            await writer
        finally:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer

    def _begin_audio(self) -> None:
        self._track.begin_response(self.id)

    async def _write(self, clauses: asyncio.Queue[str | None]) -> None:
        splitter = SentenceSplitter(first_words=self._first_words)
        speaker = self._speaker
        try:
            async with contextlib.aclosing(self._llm.stream(self.spec.request)) as stream:
                async for part in stream:
                    if isinstance(part, ToolCallDelta):
                        self.timings.mark("llm_first_token")
                        self.output.tool_delta(part)
                        continue
                    if isinstance(part, LLMFinish):
                        self._stopped_by = part.reason
                        continue
                    if not part:
                        continue
                    self.timings.mark("llm_first_token")
                    self.output.open_message(self._begin_audio if speaker else None)
                    self._heard.add_text(part)
                    self.output.text(part)
                    if speaker is None:
                        continue
                    for clause in splitter.push(part):
                        clauses.put_nowait(clause)
                    if not clauses.empty() and not speaker.first_audio.is_set():
                        await speaker.first_audio.wait()  # first audio first
            for clause in splitter.flush():
                clauses.put_nowait(clause)
        except Exception as exc:
            raise as_fault(exc, "llm") from exc
        finally:
            clauses.put_nowait(None)

    def _finish(self, status: str, transcript: str, reason: str | None = None) -> None:
        if not self.active:
            return
        self.status = status
        self.reason = reason
        self.item.text = transcript
        self.item.status = "completed" if status == "completed" else "incomplete"
        if not self.output.items and status == "completed":
            self.output.open_message()  # a reply with no words still answers the turn
        # Calls are done only now, with response.done right behind: clients (OpenAI's
        # Agents SDK) run a tool at its output_item.done and ask for the next response at
        # once, which must not find this one still in progress.
        self.output.close_calls("completed" if status == "completed" else "incomplete")
        self.output.finish_message()
        self.output.done(status, reason)
        self._emit(events.hark_metrics(self.id, self.timings.to_dict()))
        self._on_finished(self)
