"""One assistant response: LLM text → clauses → TTS → the outbound track, all streaming.

The LLM writes into a clause splitter; each clause is synthesized as soon as it is
complete and its audio queued on the track while the LLM is still writing, so the first
audio goes out after one clause, not one reply. The response lasts until its audio has
been played: barge-in at any point cancels it, and the item keeps only the heard text.

A run may start *held* (a speculative reply, begun while the user's pause is not yet the
end of the turn): it generates and synthesizes as usual, but its events and audio wait
until `release()`, and `discard()` drops it without a trace. The client never sees a
held run that was discarded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal

import numpy as np

from media.outbound import OutboundAudioTrack
from server.engines.base import ChatMessage, LanguageModel, TextToSpeech
from server.engines.faults import APOLOGY, Clip, EngineFault, as_fault
from server.protocol import events
from server.protocol.conversation import Conversation, Item
from server.reply.heard_text import HeardText
from server.reply.sentences import SentenceSplitter
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
        instructions: str,
        history: list[ChatMessage],
        voice: str,
        timings: TurnTimings,
        on_finished: Callable[[ResponseRun], None],
        held: bool = False,
        apology: Clip | None = None,
    ) -> None:
        """`apology`: said if the TTS itself fails (else the TTS says it)."""
        self.id = response_id
        self.item = Item(
            id=events.new_id("item"),
            role="assistant",
            kind="output_audio",
            text=None,
            status="in_progress",
        )
        self.timings = timings
        self.status: str = "in_progress"
        self.reason: str | None = None  # why cancelled (CancelReason), or the fault's code
        self.fault: EngineFault | None = None
        self._apology = apology
        self.audio_cut = False  # its audio was playing when it was cancelled
        self._conversation = conversation
        self._llm = llm
        self._tts = tts
        self._track = track
        self._emit = emit
        self._instructions = instructions
        self._history = history
        self._voice = voice
        self._on_finished = on_finished
        self._heard = HeardText()
        self._previous_item_id: str | None = None
        self._task: asyncio.Task[None] | None = None
        # Set once the first clause has audio (or none to give): until then the LLM
        # stream is not read, so an in-process LLM leaves the CPU to the first TTS.
        self._first_audio = asyncio.Event()
        # A held run keeps what it would emit and play until it is released.
        self._held = held
        self._released = asyncio.Event()
        self._held_events: list[dict[str, Any]] = []
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

    def start(self) -> None:
        if not self._held:
            self._open()
        self.timings.response_start = now()
        self._task = asyncio.create_task(self._run(), name=f"response-{self.id}")

    def _open(self) -> None:
        """What the client sees when a response begins: its events, its item, the track."""
        self._emit(events.response_created(self.id, self._voice))
        self._previous_item_id = self._conversation.add(self.item)
        self._emit(events.output_item_added(self.id, self.item))
        self._emit(events.item_added(self._previous_item_id, self.item))
        self._emit(events.content_part_added(self.id, self.item.id))
        self._track.begin_response(self.id)

    def release(self) -> bool:
        """A held run becomes the response: its events and audio so far go out now and the
        rest as it comes. False (and nothing sent) if it failed or was discarded."""
        if not self._held or not self.active or self._held_failed:
            return False
        self._held = False
        self._open()
        for event in self._held_events:
            self._emit(event)
        for pcm, rate in self._held_audio:
            self._track.push(pcm, rate)
        self._held_events.clear()
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

    def _out(self, event: dict[str, Any]) -> None:
        if self._held:
            self._held_events.append(event)
        else:
            self._emit(event)

    def _play(self, pcm: np.ndarray, rate: int) -> None:
        if self._held:
            self._held_audio.append((pcm, rate))
        else:
            self._track.push(pcm, rate)

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
        played_ms = self._track.clear() if self._track.response_id == self.id else 0
        if self.audio_cut or report_clear:
            self._emit(events.output_audio_buffer("cleared", self.id))
        self._finish("cancelled", self._heard.heard(played_ms), reason=reason)
        if self._task is not None:
            self._task.cancel()

    async def wait(self) -> None:
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        try:
            await self._generate_and_speak()
            await self._released.wait()
            self._track.end_response()
            await self._track.wait_drained()
            self._finish("completed", self._heard.heard(self._heard.audio_ms))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            fault = as_fault(exc, "llm")
            log.warning("response %s failed: %s: %s", self.id, fault.code, fault.message)
            if self._held:
                self._held_failed = True  # never seen: the turn's end starts a fresh one
                return
            await self._apologize(fault)

    async def _apologize(self, fault: EngineFault) -> None:
        """An engine failed: tell the client, say the apology after what was already
        queued (through the TTS, or the clip made at start-up if the TTS is what failed),
        and end the response as failed. The call goes on; the next turn tries again."""
        self.fault = fault
        self._emit(events.error("server_error", fault.code, f"Response failed: {fault.message}"))
        spoken = await self._apology_audio(fault)
        self._heard = self._heard.only_spoken()  # text the LLM wrote but no one said: gone
        if spoken is not None and self._track.response_id == self.id:
            pcm, rate = spoken
            delta = (" " if self._heard.text else "") + APOLOGY
            self._heard.add_text(delta)
            self._out(events.transcript_delta(self.id, self.item.id, delta))
            self._heard.add_audio(self._heard.locate(APOLOGY), len(pcm) * 1000 / rate)
            self._play(pcm, rate)
        self._track.end_response()
        await self._track.wait_drained()
        self._finish("failed", self._heard.heard(self._heard.audio_ms), reason=fault.code)

    async def _apology_audio(self, fault: EngineFault) -> tuple[np.ndarray, int] | None:
        if fault.stage != "tts":
            try:
                async with contextlib.aclosing(self._tts.synthesize(APOLOGY, self._voice)) as out:
                    chunks = [pcm async for pcm in out]
                if chunks:
                    return np.concatenate(chunks), self._tts.sample_rate
            except Exception:
                log.warning("response %s: the TTS failed too; the stored apology", self.id)
        if self._apology is None:
            return None
        return self._apology.pcm, self._apology.sample_rate

    async def _generate_and_speak(self) -> None:
        clauses: asyncio.Queue[str | None] = asyncio.Queue()
        writer = asyncio.create_task(self._write(clauses), name=f"llm-{self.id}")
        try:
            await self._speak(clauses)
            await writer
        finally:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer

    async def _write(self, clauses: asyncio.Queue[str | None]) -> None:
        splitter = SentenceSplitter()
        try:
            async with contextlib.aclosing(
                self._llm.stream(self._instructions, self._history)
            ) as stream:
                async for delta in stream:
                    if not delta:
                        continue
                    self.timings.mark("llm_first_token")
                    self._heard.add_text(delta)
                    self._out(events.transcript_delta(self.id, self.item.id, delta))
                    for clause in splitter.push(delta):
                        clauses.put_nowait(clause)
                    if not clauses.empty() and not self._first_audio.is_set():
                        await self._first_audio.wait()  # first audio first
            for clause in splitter.flush():
                clauses.put_nowait(clause)
        except Exception as exc:
            raise as_fault(exc, "llm") from exc
        finally:
            clauses.put_nowait(None)

    async def _speak(self, clauses: asyncio.Queue[str | None]) -> None:
        rate = self._tts.sample_rate
        first = True
        batch = _ClauseBatcher(clauses, getattr(self._tts, "clause_batch_chars", 0))
        try:
            while (parts := await batch.next()) is not None:
                self.timings.mark("first_clause")
                spans = [self._heard.locate(part) for part in parts]
                span = (spans[0][0], spans[-1][1])
                clause = " ".join(parts)
                async for pcm in self._clause_audio(clause):
                    if first:
                        pcm = trim_leading_silence(pcm, rate)
                        first = len(pcm) == 0
                    if len(pcm) == 0:
                        continue
                    self.timings.mark("tts_first_audio")
                    self._first_audio.set()
                    self._play(pcm, rate)
                    self._heard.add_audio(span, len(pcm) * 1000 / rate)
                self._first_audio.set()
        except Exception as exc:
            raise as_fault(exc, "tts") from exc
        finally:
            self._first_audio.set()

    async def _clause_audio(self, clause: str) -> AsyncIterator[np.ndarray]:
        """The clause's audio; a chunk cut mid-sentence (before "of France.") loses most
        of the silence TTS leaves after a finished utterance, so the sentence flows on."""
        mid_sentence = clause[-1:].isalnum()
        held: np.ndarray | None = None
        async with contextlib.aclosing(self._tts.synthesize(clause, self._voice)) as audio:
            async for pcm in audio:
                if not mid_sentence:
                    yield pcm
                    continue
                if held is not None:
                    yield held
                held = pcm
        if held is not None:
            yield trim_trailing_silence(held, self._tts.sample_rate)

    def _finish(self, status: str, transcript: str, reason: str | None = None) -> None:
        if not self.active:
            return
        self.status = status
        self.reason = reason
        self.item.text = transcript
        self.item.status = "completed" if status == "completed" else "incomplete"
        for event in events.response_finished(
            self.id, self.item, self._previous_item_id, status, reason, self._voice
        ):
            self._emit(event)
        self._emit(events.hark_metrics(self.id, self.timings.to_dict()))
        self._on_finished(self)


class _ClauseBatcher:
    """The clauses to synthesize next: the reply's first alone (first audio sooner), then
    whatever has piled up meanwhile, joined up to `max_chars`, for engines that speak a
    longer text better and at less cost per word (F5-TTS: `clause_batch_chars`)."""

    def __init__(self, clauses: asyncio.Queue[str | None], max_chars: int) -> None:
        self._clauses = clauses
        self._max_chars = max_chars
        self._carry: list[str | None] = []
        self._first = True

    async def next(self) -> list[str] | None:
        clause = self._carry.pop() if self._carry else await self._clauses.get()
        if clause is None:
            return None
        parts = [clause]
        if self._max_chars and not self._first:
            while not self._clauses.empty():
                more = self._clauses.get_nowait()
                if more is None or len(" ".join(parts)) + 1 + len(more) > self._max_chars:
                    self._carry.append(more)
                    break
                parts.append(more)
        self._first = False
        return parts


SILENCE_LEVEL = 200  # int16 amplitude below which TTS output counts as silence
LEAD_IN_KEEP_S = 0.01
MID_SENTENCE_TAIL_S = 0.04


def _loud_samples(pcm: np.ndarray) -> np.ndarray:
    return np.flatnonzero(np.abs(pcm.astype(np.int32)) > SILENCE_LEVEL)


def trim_trailing_silence(pcm: np.ndarray, rate: int) -> np.ndarray:
    """Keep 40 ms of the quiet after the last sound: a phrase, not a sentence, ended."""
    loud = _loud_samples(pcm)
    if len(loud) == 0:
        return pcm
    return pcm[: int(loud[-1]) + 1 + int(MID_SENTENCE_TAIL_S * rate)]


def trim_leading_silence(pcm: np.ndarray, rate: int) -> np.ndarray:
    """Drop the quiet lead-in TTS puts before a reply's first word (~40 ms for Piper):
    it only delays the moment the user hears the answer. Keeps 10 ms before the voice."""
    loud = _loud_samples(pcm)
    if len(loud) == 0:
        return pcm[:0]
    return pcm[max(0, int(loud[0]) - int(LEAD_IN_KEEP_S * rate)) :]
