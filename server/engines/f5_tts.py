"""Text-to-speech with F5-TTS and the Vocos vocoder: any voice from a few seconds of it.

`HARK_TTS=f5` (the `gpu` extra). One model is loaded once and one worker thread runs it
for every call (`FairBatchQueue`): calls are served round robin, so one call's long
reply never holds up another call's first words, and on a GPU the chunks of several
calls run as one batch. A reply is streamed by clause: the reply side sends a short
first clause (first audio sooner), then the clauses that piled up meanwhile together
(`clause_batch_chars`), which F5 speaks better and at less cost per word; closing the
iterator (barge-in) drops that call's queued chunks and stops a batch left with nobody.

Each call speaks with a reference (`VoiceReference`: audio and its words): a stored
profile, the caller's own voice, or the default voice, which is `HARK_F5_REF_AUDIO` +
`HARK_F5_REF_TEXT` or else a sentence Piper's packaged voice says at start-up. Output
is 24 kHz mono int16, resampled to the 48 kHz track like any other engine's.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Hashable
from contextlib import aclosing
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from media.wav import read_wav
from server.engines.base import EngineUnavailable
from server.engines.f5.synthesis import Chunk, F5Options, F5Synthesizer, split_text
from server.engines.fair_queue import FairBatchQueue
from server.engines.voices import VoiceError, VoiceReference
from server.engines.word_timing import TimedAudio, proportional_ends, token_spans

log = logging.getLogger("hark.engines")

DEFAULT_REFERENCE_TEXT = "Hello, I am Hark. It is nice to meet you, and I am always happy to help."


@dataclass(frozen=True)
class F5Files:
    """Where the weights come from; None: the hub's official name (or the package's)."""

    checkpoint: Path | None = None
    vocos: Path | None = None
    vocab: Path | None = None
    model_config: Path | None = None
    reference_audio: Path | None = None
    reference_text: str = ""


class F5TTS:
    name = "f5"
    clones_voices = True

    def __init__(
        self,
        options: F5Options | None = None,
        files: F5Files | None = None,
        *,
        device: str = "auto",
        max_batch: int = 0,
        prebuilt: tuple[object, object] | None = None,
    ) -> None:
        """`max_batch`: chunks of different calls run together (0: 4 on a GPU; 1 on a
        CPU, where batching measured slower). `prebuilt`: an F5 model and a Vocos
        already built (benchmarks of random-init models); else loaded from `files`."""
        self.options = options or F5Options()
        self.files = files or F5Files()
        self.device_name = device
        self.max_batch = max_batch
        self.sample_rate = 24000
        # The reply side joins clauses that wait up to this length into one synthesis.
        self.clause_batch_chars = self.options.max_chunk_chars
        self._prebuilt = prebuilt
        self._synth: F5Synthesizer | None = None
        self._queue: FairBatchQueue[Chunk, np.ndarray] | None = None
        self._default: VoiceReference | None = None

    @property
    def default_reference(self) -> VoiceReference | None:
        return self._default

    @property
    def queue_depth(self) -> int:
        """Chunks waiting for the worker (what the admission check compares)."""
        return self._queue.depth if self._queue is not None else 0

    @property
    def on_gpu(self) -> bool:
        return self._synth is not None and self._synth.device.type == "cuda"

    async def load(self) -> None:
        if self._queue is not None:
            return
        started = time.perf_counter()
        self._synth = await asyncio.to_thread(self._build)
        self._default = await asyncio.to_thread(self._default_voice)
        sizes = [1] + ([min(2, self.max_batch)] if self.max_batch > 1 else [])
        log.info("warming F5 up (batches of %s)…", sizes)
        await asyncio.to_thread(self._synth.warm_up, self._default, sizes)
        self._queue = FairBatchQueue("f5", self._synth.run, max_batch=self.max_batch)
        log.info(
            "… F5-TTS ready on %s in %.1f s (NFE %d, sway %.2f, batches of up to %d)",
            self._synth.device,
            time.perf_counter() - started,
            self.options.nfe_steps,
            self.options.sway,
            self.max_batch,
        )

    async def synthesize(
        self,
        text: str,
        voice: str | None = None,
        speed: float = 1.0,
        *,
        reference: VoiceReference | None = None,
        call_key: Hashable | None = None,
    ) -> AsyncIterator[np.ndarray]:
        """Speak `text` in the voice of `reference` (the default voice if None), chunk
        by chunk. `call_key` names the call for round-robin fairness between calls."""
        timed = self.synthesize_words(text, voice, speed, reference=reference, call_key=call_key)
        async with aclosing(timed) as chunks:
            async for chunk in chunks:
                yield chunk.pcm

    async def synthesize_words(
        self,
        text: str,
        voice: str | None = None,
        speed: float = 1.0,
        *,
        reference: VoiceReference | None = None,
        call_key: Hashable | None = None,
    ) -> AsyncIterator[TimedAudio]:
        """Like `synthesize`, each chunk with its words' ends estimated in proportion to
        its characters: F5 has no alignment, and sizes a chunk's audio by its text."""
        queue = self._require()
        voiced = reference or self._default
        assert voiced is not None
        key: Hashable = call_key if call_key is not None else object()
        chunks = split_text(text, self._max_chars)
        jobs = [queue.submit(key, Chunk(c, voiced, speed)) for c in chunks]
        first_word = 0
        try:
            for job, chunk in zip(jobs, chunks, strict=True):
                try:
                    pcm = await job.result()
                except asyncio.CancelledError:
                    task = asyncio.current_task()
                    if task is not None and task.cancelling():
                        raise
                    raise RuntimeError("the F5 worker stopped") from None
                yield TimedAudio(pcm, proportional_ends(chunk, len(pcm), first_word))
                first_word += len(token_spans(chunk))
        finally:
            for job in jobs:
                job.cancel()

    def close(self) -> None:
        if self._queue is not None:
            self._queue.stop()

    @property
    def _max_chars(self) -> int:
        return self.options.max_chunk_chars

    def _require(self) -> FairBatchQueue[Chunk, np.ndarray]:
        if self._queue is None:
            raise RuntimeError("F5TTS.load() must finish before synthesize()")
        return self._queue

    def _build(self) -> F5Synthesizer:
        """Blocking: model and vocoder built or loaded, on the device, in eval mode."""
        import torch

        from server.engines.f5 import loading

        device = loading.resolve_device(self.device_name)
        self.max_batch = self.max_batch or (4 if device.type == "cuda" else 1)
        config = self.files.model_config or loading.default_model_config()
        architecture = loading.F5Architecture.from_yaml(config)
        if self._prebuilt is not None:
            model, vocoder = self._prebuilt
        else:
            vocab = self.files.vocab or loading.default_vocab()
            log.info("building F5 (%s, vocab %s)…", architecture.name, vocab.name)
            model = loading.build_f5(architecture, vocab, attn_mask=self.max_batch > 1)
            checkpoint = self.files.checkpoint or loading.official_checkpoint()
            log.info("loading F5 weights %s…", checkpoint)
            loading.load_f5_weights(model, checkpoint)
            vocoder = loading.load_vocos(self.files.vocos)
        assert isinstance(model, torch.nn.Module) and isinstance(vocoder, torch.nn.Module)
        # Half precision on a GPU that computes in it (as F5's own inference does); the
        # vocoder stays in float32.
        half = device.type == "cuda" and torch.cuda.get_device_capability(device)[0] >= 7
        model = model.to(device=device, dtype=torch.float16 if half else torch.float32).eval()
        vocoder = vocoder.to(device).eval()
        convert = loading.f5_modules().convert_char_to_pinyin
        return F5Synthesizer(model, vocoder, architecture.mel, self.options, convert, device)

    def _default_voice(self) -> VoiceReference:
        """HARK_F5_REF_AUDIO + HARK_F5_REF_TEXT, else Piper's packaged voice saying a
        sentence (so a server with no voice files still has a voice)."""
        files = self.files
        if files.reference_audio is not None:
            if not files.reference_text.strip():
                raise EngineUnavailable("HARK_F5_REF_AUDIO needs HARK_F5_REF_TEXT, its words")
            try:
                pcm, rate = read_wav(files.reference_audio)
                return VoiceReference(pcm, rate, files.reference_text, name="default")
            except (OSError, ValueError, EOFError) as exc:
                raise EngineUnavailable(
                    f"cannot use HARK_F5_REF_AUDIO {files.reference_audio}: {exc}"
                ) from exc
        return piper_reference(DEFAULT_REFERENCE_TEXT)


def piper_reference(text: str) -> VoiceReference:
    """Piper's packaged voice saying `text`: a reference every install can make."""
    from piper import PiperVoice

    from server.engines.piper_tts import packaged_voice

    model, config = packaged_voice()
    voice = PiperVoice.load(model, config_path=config)
    pcm = np.concatenate([chunk.audio_int16_array for chunk in voice.synthesize(text)])
    try:
        return VoiceReference(pcm, voice.config.sample_rate, text, name="piper-joe")
    except VoiceError as exc:
        raise EngineUnavailable(f"Piper's reference for F5 is unusable: {exc}") from exc
