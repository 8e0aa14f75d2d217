"""F5-TTS end to end on a tiny random-init F5 (DiT) + Vocos built here and loaded from
files, as an operator's real weights would be: 24 kHz chunks, long text in chunks, two
calls at once (round robin, one batch), barge-in dropping queued and running work, a
reference voice, and the reply path into the 48 kHz track. Random weights say nothing
of quality; they run exactly the code and the shapes the real model does."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch", reason="the gpu extra (scripts/install.sh gpu)")
pytest.importorskip("f5_tts", reason="the gpu extra (scripts/install.sh gpu)")

from server.engines.base import TextToSpeech
from server.engines.chat import LLMRequest
from server.engines.f5.synthesis import F5Options, split_text
from server.engines.f5_tts import F5TTS, F5Files
from server.engines.word_timing import TimedAudio, token_spans
from tests.f5_models import voiced_reference, write_random_f5

HOP = 256
LONG_TEXT = (
    "The moon is about three hundred and eighty thousand kilometres away from us. "
    "Its light takes a little more than a second to reach the Earth, which is quick. "
    "People first walked on it in nineteen sixty nine, and brought rocks home."
)


@pytest.fixture(scope="module")
def f5_files(tmp_path_factory: pytest.TempPathFactory) -> F5Files:
    return write_random_f5(tmp_path_factory.mktemp("f5-tiny"))


@contextlib.asynccontextmanager
async def loaded(files: F5Files, **kwargs: object) -> AsyncIterator[F5TTS]:
    options = kwargs.pop("options", F5Options(nfe_steps=4))
    engine = F5TTS(options, files, device="cpu", **kwargs)  # type: ignore[arg-type]
    await engine.load()
    try:
        yield engine
    finally:
        engine.close()


def expected_samples(engine: F5TTS, text: str, reference: object = None) -> int:
    synth = engine._synth
    assert synth is not None
    prepared = synth.prepare(reference or engine.default_reference)  # type: ignore[arg-type]
    return (synth.frames_for(prepared, text) - prepared.mel.shape[0]) * HOP


async def test_f5_loads_the_files_and_speaks_24khz_int16(f5_files: F5Files) -> None:
    async with loaded(f5_files, max_batch=1) as engine:
        assert isinstance(engine, TextToSpeech)
        assert engine.sample_rate == 24000 and engine.clones_voices
        # No reference configured: Piper's packaged voice said the default line.
        reference = engine.default_reference
        assert reference is not None and reference.name == "piper-joe"
        assert reference.sample_rate == 22050 and 2.0 < reference.duration_s < 8.0
        text = "Paris is the capital of France."
        chunks = [c async for c in engine.synthesize(text)]
        assert len(chunks) == 1 and chunks[0].dtype == np.int16
        assert abs(len(chunks[0]) - expected_samples(engine, text)) <= HOP
        assert np.abs(chunks[0]).max() > 0


def test_f5_split_text_keeps_every_word_in_short_chunks() -> None:
    chunks = split_text(LONG_TEXT, 135)
    assert len(chunks) == 3
    assert all(len(c) <= 135 for c in chunks)
    assert " ".join(chunks) == " ".join(LONG_TEXT.split())
    run_on = "word " * 80
    assert all(len(c) <= 50 for c in split_text(run_on, 50))
    assert split_text("   ", 135) == []


async def test_f5_long_text_streams_chunk_by_chunk(f5_files: F5Files) -> None:
    async with loaded(f5_files, max_batch=1) as engine:
        stream = engine.synthesize(LONG_TEXT, call_key="call-1")
        first = await anext(stream)
        # The first chunk arrives while the rest still waits for the worker.
        assert abs(len(first) - expected_samples(engine, split_text(LONG_TEXT, 135)[0])) <= HOP
        rest = [c async for c in stream]
        assert len(rest) == 2
        assert [keys for keys in engine._queue.served if keys == ("call-1",)] == [("call-1",)] * 3


async def test_f5_words_end_in_proportion_to_each_chunks_characters(f5_files: F5Files) -> None:
    async with loaded(f5_files, max_batch=1) as engine:
        chunks = [c async for c in engine.synthesize_words(LONG_TEXT)]
    assert len(chunks) == 3
    words = [w.word for c in chunks for w in c.words or ()]
    assert words == list(range(len(token_spans(LONG_TEXT))))  # numbered across chunks
    for chunk in chunks:
        ends = [w.sample for w in chunk.words or ()]
        assert ends == sorted(ends) and 0 < ends[0] and ends[-1] == len(chunk.pcm)


async def test_f5_two_calls_at_once_take_turns_and_share_batches(f5_files: F5Files) -> None:
    caller = voiced_reference(seconds=2.0, rate=16000)
    async with loaded(f5_files, max_batch=2) as engine:

        async def speak(key: str, reference: object) -> list[np.ndarray]:
            stream = engine.synthesize(LONG_TEXT, call_key=key, reference=reference)  # type: ignore[arg-type]
            return [c async for c in stream]

        a, b = await asyncio.gather(speak("a", None), speak("b", caller))
        texts = split_text(LONG_TEXT, 135)
        # Each call's audio has its own reference's pace, chunk by chunk, in order.
        for audio, reference in ((a, None), (b, caller)):
            expected = [expected_samples(engine, t, reference) for t in texts]
            assert len(audio) == len(expected)
            assert all(abs(len(c) - n) <= HOP for c, n in zip(audio, expected, strict=True))
        assert len(a[0]) != len(b[0])  # different references, different paces
        served = list(engine._queue.served)
        assert ("a", "b") in served or ("b", "a") in served  # one batch, both calls
        firsts = [served.index(next(k for k in served if key in k)) for key in "ab"]
        lasts = [max(i for i, k in enumerate(served) if key in k) for key in "ab"]
        assert max(firsts) < min(lasts)  # neither call waited for the other's whole reply


async def test_f5_round_robin_puts_a_new_call_before_a_long_reply(f5_files: F5Files) -> None:
    async with loaded(f5_files, max_batch=1) as engine:
        text = f"{LONG_TEXT} {LONG_TEXT}"
        long_reply = asyncio.create_task(_collect(engine.synthesize(text, call_key="a")))
        await asyncio.sleep(0)
        short = await _collect(engine.synthesize("Yes.", call_key="b"))
        assert len(short) == 1
        served = [keys[0] for keys in engine._queue.served]
        # "b" is served once "a" has had a turn or two, not after all six of "a"'s chunks.
        assert len(split_text(text, 135)) == 6
        assert served.index("b") <= 2, served
        assert len(await long_reply) == 6


async def test_f5_barge_in_drops_queued_chunks_and_stops_the_running_batch(
    f5_files: F5Files,
) -> None:
    async with loaded(f5_files, max_batch=1, options=F5Options(nfe_steps=1000)) as engine:
        passes = 0
        first_pass = threading.Event()

        def count(module: object, args: object) -> None:
            nonlocal passes
            passes += 1
            first_pass.set()

        assert engine._synth is not None
        hook = engine._synth.model.transformer.register_forward_pre_hook(count)
        stream = engine.synthesize(LONG_TEXT, call_key="a")
        first = asyncio.ensure_future(anext(stream))
        assert await asyncio.to_thread(first_pass.wait, 30)
        assert engine.queue_depth == 2  # the other two chunks wait
        first.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await first
        await stream.aclose()  # the caller barged in
        assert engine.queue_depth == 0
        hook.remove()
        # The worker is free again: a short chunk of another call is served, and the
        # deserted batch stopped long before its 1000 steps.
        engine._synth._steps = 2
        assert len(await _collect(engine.synthesize("Hi.", call_key="b"))) == 1
        assert passes < 500, passes
        assert [keys[0] for keys in engine._queue.served] == ["a", "b"]


async def test_f5_speaks_with_a_reference_built_here(f5_files: F5Files) -> None:
    async with loaded(f5_files, max_batch=1) as engine:
        slow = voiced_reference(seconds=6.0, rate=48000, text="Short words here.")
        fast = voiced_reference(seconds=2.0, rate=16000, text="Many more words are in this one.")
        text = "How can I help you today?"
        slow_audio = await _collect(engine.synthesize(text, reference=slow))
        fast_audio = await _collect(engine.synthesize(text, reference=fast))
        # F5 keeps the reference's pace: a slow talker's clip makes longer speech.
        assert len(slow_audio[0]) > 3 * len(fast_audio[0])
        assert abs(len(slow_audio[0]) - expected_samples(engine, text, slow)) <= HOP


async def _collect(stream: AsyncIterator[np.ndarray]) -> list[np.ndarray]:
    return [chunk async for chunk in stream]


def test_f5_missing_weights_are_named(tmp_path: Path) -> None:
    from server.engines.base import EngineUnavailable
    from server.engines.f5 import loading

    with pytest.raises(EngineUnavailable, match="not a file"):
        loading.load_f5_weights(object(), tmp_path / "nope.safetensors")  # type: ignore[arg-type]
    with pytest.raises(EngineUnavailable, match=r"config\.yaml and pytorch_model\.bin"):
        loading.load_vocos(tmp_path)
    with pytest.raises(EngineUnavailable, match="HARK_F5_CHECKPOINT"):
        loading.official_checkpoint()  # HF_HUB_OFFLINE=1: no hub here


class ScriptedFakeLLM:
    """A fake LLM (scripted words) so the reply's text, and so its clauses, are known."""

    name = "fake-llm"

    def __init__(self, text: str) -> None:
        self.words = text.split(" ")

    async def load(self) -> None:
        pass

    async def stream(self, request: LLMRequest) -> AsyncIterator[str]:
        for i, word in enumerate(self.words):
            yield word if i == 0 else " " + word
            await asyncio.sleep(0.002)


async def test_f5_reply_plays_24khz_speech_into_the_48khz_track(f5_files: F5Files) -> None:
    from media.outbound import OutboundAudioTrack
    from server.protocol.conversation import Conversation
    from server.reply.response import ResponseRun
    from server.reply.spec import ReplySpec
    from server.turns.timings import TurnTimings

    text = "Paris is the capital of France, a city on the Seine. It has many museums."
    async with loaded(f5_files, max_batch=1) as engine:
        spoken: list[str] = []
        pushed: list[int] = []
        synthesize = engine.synthesize_words

        def observed(
            clause: str, voice: str | None = None, speed: float = 1.0
        ) -> AsyncIterator[TimedAudio]:
            spoken.append(clause)
            return synthesize(clause, voice, speed)

        engine.synthesize_words = observed  # type: ignore[method-assign]
        track = OutboundAudioTrack()  # paced in real time, as on a call
        push = track.push
        track.push = lambda pcm, rate: (pushed.append(len(pcm)), push(pcm, rate))[1]  # type: ignore[method-assign]
        events: list[dict[str, object]] = []
        done = asyncio.Event()
        run = ResponseRun(
            response_id="resp_f5",
            conversation=Conversation(),
            llm=ScriptedFakeLLM(text),  # type: ignore[arg-type]
            tts=engine,
            track=track,
            emit=events.append,
            spec=ReplySpec(LLMRequest("", ()), voice="joe"),
            timings=TurnTimings(),
            on_finished=lambda _: done.set(),
        )
        run.start()
        frames = []
        async with asyncio.timeout(60):
            while not done.is_set():
                frames.append(await track.recv())
        track.stop()

    assert run.status == "completed", events
    assert spoken[0] == "Paris is the capital"
    assert " ".join(spoken) == text
    assert {f.sample_rate for f in frames} == {48000}
    assert {f.samples for f in frames} == {960}
    audio = np.concatenate([f.to_ndarray().reshape(-1) for f in frames])
    voiced = np.flatnonzero(np.abs(audio) > 0)
    # Every 24 kHz sample the reply pushed came out as two at 48 kHz, without a gap (the
    # tiny model is far faster than real time), within a frame.
    assert abs((voiced[-1] - voiced[0] + 1) - 2 * sum(pushed)) <= 960 + 2 * HOP
    transcript = [e for e in events if e["type"] == "response.output_audio_transcript.done"]
    assert transcript and transcript[0]["transcript"] == text
