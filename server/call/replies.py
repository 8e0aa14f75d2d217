"""The reply side of one call: the reply in progress, the one held at a pause, and what the
user heard of past ones.

Every rule about stopping a reply lives here once, whoever asks: barge-in pauses the
track, then confirms (cancel, keep only what was heard) or resumes; the client may cancel,
clear the output buffer or truncate an item to what it played. The session decides
*when*; this decides *how*.

One reply at a time holds the conversation (and, spoken, the track): `current`.
Out-of-band written replies (`conversation: "none"`, `["text"]`) run beside it, in
`side`, untouched by barge-in.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from media.outbound import OutboundAudioTrack
from server.call.observer import ResponseOutcome
from server.call.ports import CallControlError
from server.engines.base import Engines, LanguageModel
from server.engines.chat import LLMRequest
from server.engines.faults import APOLOGY
from server.engines.language_voices import parse_voice
from server.protocol import events
from server.protocol.conversation import Conversation, Item, new_id
from server.reply.heard_text import HeardText
from server.reply.response import ResponseRun
from server.reply.scripted import ScriptedReply
from server.reply.spec import ReplySpec
from server.reply.speculation import Speculation
from server.turns.timings import TurnTimings

log = logging.getLogger("hark.replies")

MAX_SPOKEN_ITEMS = 50
Emit = Callable[[dict[str, Any]], None]


class CallReplies:
    def __init__(
        self,
        *,
        conversation: Conversation,
        engines: Engines,
        track: OutboundAudioTrack,
        emit: Emit,
        on_finished: Callable[[ResponseOutcome], None],
    ) -> None:
        self.current: ResponseRun | None = None
        self.side: dict[str, ResponseRun] = {}  # out-of-band written replies
        self.speculation = Speculation()
        self._conversation = conversation
        self._engines = engines
        self._track = track
        self._emit = emit
        self._on_finished = on_finished
        self._spoken: dict[str, HeardText] = {}
        self._stamping: set[asyncio.Task[None]] = set()

    @property
    def in_progress(self) -> bool:
        return self.current is not None and self.current.active

    @property
    def playing(self) -> bool:
        return self.in_progress and self._track.playing

    def said_recently(self) -> str:
        """The text of the last spoken reply and of the one in progress: what the echo
        of the bot's voice, still in its window, could hold."""
        texts = [heard.text for heard in list(self._spoken.values())[-1:]]
        if self.current is not None and self.current.speaks:
            texts.append(self.current.spoken.text)
        return " ".join(texts)

    def close(self) -> None:
        if self.current is not None:
            self.current.cancel("client_cancelled")
        for run in list(self.side.values()):
            run.cancel("client_cancelled")
        self.speculation.drop()
        for task in self._stamping:
            task.cancel()

    # ---- starting ----------------------------------------------------------------------------

    def start(self, spec: ReplySpec, timings: TurnTimings) -> ResponseRun:
        """Start a reply. An out-of-band written one runs beside the current one; any
        other becomes `current` (the caller checks that none is in progress)."""
        run = self._new_run(spec, timings)
        if spec.in_conversation or spec.spoken:
            self.speculation.drop()
            self.current = run
        else:
            self.side[run.id] = run
        run.start()
        return run

    def say(self, text: str, voice: str) -> ResponseRun:
        """Speak fixed words (a greeting) as a response of their own."""
        self.speculation.drop()
        spec = ReplySpec(request=LLMRequest(instructions="", history=()), voice=voice)
        run = self._new_run(spec, TurnTimings(), llm=ScriptedReply(text))
        self.current = run
        run.start()
        return run

    def speculate(self, spec: ReplySpec) -> None:
        """Begin the reply `spec` describes, held (`server.reply.speculation`)."""
        run = self._new_run(spec, TurnTimings(), held=True)
        self.speculation.begin(run, spec)

    def adopt(self, spec: ReplySpec, timings: TurnTimings) -> bool:
        """Release the held reply if it answers exactly this turn."""
        run = self.speculation.adopt(spec, timings)
        if run is not None:
            self.current = run
        return run is not None

    def apologize(self, voice: str) -> None:
        """The user's turn was lost (an engine failed before a reply could start): say
        the apology as a reply of its own, unless one is already going."""
        if self.current is None:
            self.say(APOLOGY, voice)

    def _new_run(
        self,
        spec: ReplySpec,
        timings: TurnTimings,
        *,
        held: bool = False,
        llm: LanguageModel | None = None,
    ) -> ResponseRun:
        return ResponseRun(
            response_id=new_id("resp"),
            conversation=self._conversation,
            llm=llm or self._engines.llm,
            tts=self._engines.tts,
            track=self._track,
            emit=self._emit,
            spec=spec,
            timings=timings,
            on_finished=self._finished,
            held=held,
            apology=self._engines.apology,
            # Two words alone are spoken well by Piper; Kokoro's voices (es-…, de-…)
            # need the clause: a lone "La estación" came back as Latin to Whisper.
            first_words=0 if parse_voice(spec.voice) else self._engines.first_chunk_words,
        )

    def _finished(self, run: ResponseRun) -> None:
        if self.current is run:
            self.current = None
        self.side.pop(run.id, None)
        if run.speaks:
            self._spoken[run.item.id] = run.spoken
        while len(self._spoken) > MAX_SPOKEN_ITEMS:
            del self._spoken[next(iter(self._spoken))]
        self._on_finished(
            ResponseOutcome(
                response_id=run.id,
                item_id=run.item.id,
                status=run.status,
                reason=run.reason,
                transcript=run.item.text or "",
                timings=run.timings.to_dict(),
                audio_cut=run.audio_cut,
                fault=(run.fault.stage, run.fault.code) if run.fault else None,
            )
        )

    # ---- barge-in ------------------------------------------------------------------------------

    def pause(self, onset_at: float) -> None:
        """Speech over the reply: silence it on the next frame, undecided yet."""
        run = self.current
        if run is None:
            return
        audible = self._track.playing
        self._track.pause()
        if run.timings.barge_in_onset is None and audible:
            run.timings.barge_in_onset = onset_at
            task = asyncio.create_task(self._stamp_silenced(run), name=f"{run.id}-stop")
            self._stamping.add(task)
            task.add_done_callback(self._stamping.discard)
        self._emit(events.hark_interruption("paused", run.id, self._track.playout_ms))

    def resume(self) -> None:
        """It was a cough or an "uh-huh": play on from where the pause stopped."""
        run = self.current
        if run is None:
            return
        run.timings.false_interruptions += 1
        self._track.resume()
        self._emit(events.hark_interruption("resumed", run.id, self._track.playout_ms))

    def interrupt(self) -> None:
        """The user took the turn: cancel, keeping only what was heard."""
        run = self.current
        if run is not None:
            played = self._track.playout_ms
            ours = self._track.client_played_ms if self._track.response_id == run.id else 0
            heard_ms = round(run.spoken.cut(ours)[1]) if run.speaks else None
            self._emit(events.hark_interruption("confirmed", run.id, played, heard_ms))
            run.cancel("turn_detected")

    async def _stamp_silenced(self, run: ResponseRun) -> None:
        """Stamp when the track really went silent after the barge-in (its next frame)."""
        for _ in range(50):
            if self._track.silenced_at is not None:
                run.timings.barge_in_silenced = self._track.silenced_at
                return
            await asyncio.sleep(0.01)

    # ---- what the client may ask -----------------------------------------------------------

    def cancel(self, response_id: str | None) -> None:
        run = self.current
        if response_id is not None and response_id in self.side:
            run = self.side[response_id]
        if run is None or (response_id is not None and response_id != run.id):
            raise CallControlError(
                "response_cancel_not_active", "There is no active response to cancel"
            )
        run.cancel("client_cancelled")

    def clear_output(self) -> None:
        if self.current is not None:
            self.current.cancel("client_cancelled", report_clear=True)
            return
        response_id = self._track.response_id
        self._track.clear()
        self._emit(events.output_audio_buffer("cleared", response_id or ""))

    def truncate(self, item: Item, audio_end_ms: int) -> None:
        spoken = self._heard_text(item.id)
        if item.role != "assistant" or spoken is None:
            raise CallControlError(
                "invalid_value", "Only assistant audio items can be truncated", "item_id"
            )
        if not 0 <= audio_end_ms <= spoken.audio_ms + 1:
            raise CallControlError(
                "invalid_value",
                f"audio_end_ms {audio_end_ms} is outside the item's {int(spoken.audio_ms)} ms",
                "audio_end_ms",
            )
        if self.current is not None and self.current.item is item:
            self.current.cancel("client_cancelled")
        item.text = spoken.heard(audio_end_ms)
        self._emit(events.item_truncated(item.id, 0, audio_end_ms))

    def _heard_text(self, item_id: str) -> HeardText | None:
        """The text-to-audio map of an assistant item."""
        if self.current is not None and self.current.item.id == item_id:
            return self.current.spoken
        return self._spoken.get(item_id)
