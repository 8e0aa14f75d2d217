"""Speech-to-text with faster-whisper (CTranslate2) and the packaged Whisper models.

The packaged models are tiny.en (English, the fast default) and base (99 languages:
a language asked for is decoded in; none asked for is detected per utterance).

Each call transcribes one finished utterance, cut by the VAD, so Whisper's own VAD is
off. Whisper pads every input to a 30 s window, so the encoder costs the same for one
word as for thirty seconds (~250 ms of the ~400 ms a short question costs on two cores).
A voice turn is short, so utterances up to `SHORT_MAX_S` are encoded in a 10 s window
instead: ~7x less encoder work, the same word error rate on the benchmark questions
(tests/bench/stt_speed.py). Windows tighter than ~10 s make tiny.en repeat itself, so
the window is fixed, not fitted, and a transcript that still repeats a phrase (or runs
to its token cap) is decoded again in the full 30 s window. Longer utterances take
faster-whisper's ordinary path.

A short window is decoded with beam 5. With `greedy_first` it is decoded greedily first
and again with the beam only where the greedy words are unsure (mean token
log-probability under `GREEDY_MIN_LOGPROB`), on the same encoder output: on the
benchmark's Piper questions, clean and at 10 and 5 dB SNR, that was ~30 ms sooner with no
worse a word error rate (`tests/bench/stt_speed.py`). But on 49 turns recorded over
WebRTC (Opus) in a full test run, greedy decoding misheard 10 that beam 5 heard right
("What is the capital of friends?", "a brave dragon in the night" for "and a knight"),
every one with a mean log-probability far above the bar, so it is off by default.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from pathlib import Path

import ctranslate2
import numpy as np
from faster_whisper import WhisperModel
from faster_whisper.tokenizer import Tokenizer

from server.engines.base import EngineUnavailable, Transcript
from server.engines.core_share import CoreShare
from server.engines.fair_queue import Batch, FairBatchQueue
from server.engines.threaded import EngineWorker
from server.engines.whisper_models import PACKAGED, tiny_en_dir, whisper_model_dir

log = logging.getLogger("hark.engines")

SAMPLE_RATE = 16000
FRAMES_PER_SECOND = 100  # Whisper's mel hop is 10 ms
# Shorter than a syllable: nothing to transcribe, and Whisper would invent words.
MIN_SAMPLES = SAMPLE_RATE // 10
SHORT_WINDOW_S = 10
# Leave at least 4 s of padding in the short window: with less, tiny.en loops.
SHORT_MAX_S = 6.0
# A short window's transcript may hold at most this many tokens per second of audio
# (fast speech is ~5), so a decoding loop stops early and is caught.
TOKENS_PER_SECOND = 8
REPEAT_MIN_WORDS = 4
# A greedy transcript less sure than this (mean log-probability per token) is decoded
# again with the beam. Clean questions score -0.02 to -0.37; the greedy misses at 10 dB
# SNR score -0.74 and -0.87 ("Top Hall is Mount Everest"). Below -0.6 would do for those,
# but at a pause in mid-sentence the greedy pass more readily finishes the sentence
# ("Please remind me to call my mother." at -0.42, for "… call my"), which semantic_vad
# takes for a finished turn: at -0.4 it ends no more cut sentences early than beam 5
# (tests/bench/end_of_turn.py).
GREEDY_MIN_LOGPROB = -0.4


class FasterWhisperSTT:
    name = "faster-whisper"

    def __init__(
        self,
        beam_size: int = 5,
        cpu_threads: int = 2,
        model_path: Path | None = None,
        short_window: bool = True,
        *,
        greedy_first: bool = False,
        model: str = "",
        cache_dir: Path | None = None,
        device: str = "cpu",
        compute_type: str = "",
        batch: int = 0,
        cores: CoreShare | None = None,
    ) -> None:
        """`model`: a faster-whisper model name (large-v3-turbo, distil-large-v3, …)
        fetched where a hub is reachable, or a model folder; empty or "tiny.en": the
        packaged tiny.en; "base": the packaged multilingual base, joined into
        `cache_dir` (HARK_CACHE_DIR) on first use.
        `device`: cpu, cuda or auto; `compute_type` empty: int8 on the CPU, float16 on
        CUDA. `batch`: utterances of several calls decoded together (0: 1 on the CPU,
        where batching measured no gain, 8 on CUDA). `greedy_first`: a short utterance is
        decoded greedily, with the beam only where that is unsure (module docstring)."""
        self.beam_size = beam_size
        self.greedy_first = greedy_first and beam_size > 1
        self.cpu_threads = cpu_threads
        self.model_path = model_path or (Path(model) if model and Path(model).is_dir() else None)
        self.model_name = "" if self.model_path is not None else model
        self.cache_dir = cache_dir
        self.short_window = short_window
        self.device = device
        self.compute_type = compute_type
        self.batch = batch
        # The node's cores: a decode is stamped busy, so the other workers' llama.cpp
        # steps take fewer threads meanwhile (core_share.py).
        self._cores = cores or CoreShare(None)
        self._worker = EngineWorker("stt")
        self._queue: FairBatchQueue[np.ndarray, Transcript] | None = None
        self._model: WhisperModel | None = None
        self._pending = 0
        self._load_lock: asyncio.Lock | None = None

    @property
    def queue_depth(self) -> int:
        """Utterances waiting for (or in) the model: what admission compares."""
        return self._pending

    async def load(self) -> None:
        """Load once; calls that arrive while it loads wait for the same load (Whisper
        base is loaded by the first call that needs it)."""
        self._load_lock = self._load_lock or asyncio.Lock()
        async with self._load_lock:
            if self._model is None:
                await self._load()

    async def _load(self) -> None:
        started = time.perf_counter()
        device = resolve_device(self.device)
        self.device = device
        self.compute_type = self.compute_type or compute_type_for(device)
        self.batch = self.batch or (8 if device == "cuda" else 1)
        if self.model_path is not None:
            path, label = self.model_path, f"Whisper from {self.model_path}"
        elif self.model_name in PACKAGED or not self.model_name:
            name = self.model_name or "tiny.en"
            path = await self._worker.run(whisper_model_dir, name, self.cache_dir)
            label = f"Whisper {name}"
        else:
            path, label = self.model_name, f"Whisper {self.model_name}"
        how = f"{self.compute_type}, {self.cpu_threads} threads"
        if device != "cpu":
            how = f"{device}, {self.compute_type}"
        log.info("loading %s (%s)…", label, how)
        self._model = await self._worker.run(self._load_model, str(path))
        if self.batch > 1:
            self._queue = FairBatchQueue("stt", self._decode_batch, max_batch=self.batch)
        log.info(
            "… Whisper ready in %.1f s (batches of up to %d)",
            time.perf_counter() - started,
            self.batch,
        )

    def _load_model(self, path: str) -> WhisperModel:
        try:
            model = WhisperModel(
                path,
                device=self.device,
                compute_type=self.compute_type,
                cpu_threads=self.cpu_threads if self.device == "cpu" else 0,
            )
        except Exception as exc:  # a missing folder, no hub, no CUDA runtime: all say so
            hint = " (set HARK_STT_MODEL to a model folder)" if self.model_name else ""
            raise EngineUnavailable(f"faster-whisper cannot load {path}{hint}: {exc}") from exc
        # Warm up both paths: the first call allocates buffers and is several times slower.
        warm = np.zeros(SAMPLE_RATE, dtype=np.float32)
        self._decode_window(model, warm)
        self._decode_full(model, warm)
        return model

    async def transcribe(self, audio: np.ndarray) -> str:
        """Transcribe 16 kHz mono int16 audio (float in [-1, 1] is accepted too)."""
        return (await self.transcribe_detailed(audio)).text

    @property
    def multilingual(self) -> bool:
        """True once a model that knows more than English is loaded."""
        return self._model is not None and self._model.model.is_multilingual

    async def transcribe_detailed(
        self, audio: np.ndarray, language: str | None = None
    ) -> Transcript:
        """Like `transcribe`, with the confidence needed to tell words from noise.

        `language` (ISO 639-1) is decoded in by a multilingual model; None: detected.
        An English-only model always decodes English."""
        model = self._require()
        language = language if model.model.is_multilingual else "en"
        samples = np.asarray(audio).reshape(-1)
        if samples.size < MIN_SAMPLES:
            return Transcript.empty(samples.size / SAMPLE_RATE, language or "")
        if samples.dtype == np.int16:
            samples = samples.astype(np.float32) / 32768.0
        else:
            samples = samples.astype(np.float32)
        self._pending += 1
        try:
            if self._queue is not None:
                job = self._queue.submit(object(), (samples, language))
                try:
                    return await job.result()
                finally:
                    job.cancel()  # a dropped preemptive transcription never runs
            return await self._worker.run(self._timed_decode, model, samples, language)
        finally:
            self._pending -= 1

    def _timed_decode(
        self, model: WhisperModel, samples: np.ndarray, language: str | None
    ) -> Transcript:
        started = time.perf_counter()
        with self._cores.computing():
            transcript = self.decode(model, samples, language)
        log.debug(
            "whisper: %.1f s of audio in %.2f s: [%s %.2f] %r (no speech %.2f, logprob %.2f)",
            transcript.duration,
            time.perf_counter() - started,
            transcript.language,
            transcript.language_probability,
            transcript.text,
            transcript.no_speech_prob,
            transcript.avg_logprob,
        )
        return transcript

    def decode(
        self, model: WhisperModel, samples: np.ndarray, language: str | None = "en"
    ) -> Transcript:
        """Blocking: float32 16 kHz samples to a transcript (on the worker thread).

        `language` None: detected (a multilingual model only)."""
        if self.short_window and samples.size <= SHORT_MAX_S * SAMPLE_RATE:
            transcript = self._decode_windows(model, [samples], [language])[0]
            if transcript is not None:
                return transcript
            log.debug("whisper: the short window looped; decoding again in 30 s")
        return self._decode_full(model, samples, language)

    def _decode_batch(
        self, batch: Batch[tuple[np.ndarray, str | None], Transcript]
    ) -> list[Transcript]:
        """The batch worker's function (HARK_STT_BATCH > 1): the short utterances of
        several calls encoded and decoded together, the rest one by one."""
        model = self._require()
        samples = [job.payload[0] for job in batch.jobs]
        languages = [job.payload[1] for job in batch.jobs]
        limit = SHORT_MAX_S * SAMPLE_RATE if self.short_window else 0
        short = [i for i, s in enumerate(samples) if s.size <= limit]
        results: list[Transcript | None] = [None] * len(samples)
        windows = self._decode_windows(
            model, [samples[i] for i in short], [languages[i] for i in short]
        )
        for i, transcript in zip(short, windows, strict=True):
            results[i] = transcript
        return [
            result if result is not None else self._decode_full(model, samples[i], languages[i])
            for i, result in enumerate(results)
        ]

    def _decode_window(self, model: WhisperModel, samples: np.ndarray) -> Transcript | None:
        """One greedy-or-beam pass in a `SHORT_WINDOW_S` window; None if it looped."""
        return self._decode_windows(model, [samples], ["en"])[0]

    def _decode_windows(
        self, model: WhisperModel, batch: list[np.ndarray], languages: list[str | None]
    ) -> list[Transcript | None]:
        """Short utterances in `SHORT_WINDOW_S` windows, encoded and decoded as one batch
        (on a GPU, several calls' turns for the price of about one); None where one
        looped. A language of None is detected from the encoded window."""
        if not batch:
            return []
        frames = SHORT_WINDOW_S * FRAMES_PER_SECOND
        # Pad each log-mel with zeros, as faster-whisper pads its 30 s window.
        windows = np.zeros(
            (len(batch), model.feature_extractor.mel_filters.shape[0], frames), np.float32
        )
        for row, samples in enumerate(batch):
            mel = model.feature_extractor(samples)[:, :frames]
            windows[row, :, : mel.shape[1]] = mel
        encoded = model.model.encode(ctranslate2.StorageView.from_array(windows))
        chosen = _languages(model, encoded, languages)
        tokenizers = [_tokenizer(model, language) for language, _ in chosen]
        prompts = [[*t.sot_sequence, t.no_timestamps] for t in tokenizers]
        caps = [int(4 + TOKENS_PER_SECOND * s.size / SAMPLE_RATE) for s in batch]
        decode = functools.partial(
            model.model.generate,
            encoded,
            prompts,
            max_length=len(prompts[0]) + max(caps),
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=[-1],
        )
        if not self.greedy_first:
            results = decode(beam_size=self.beam_size)
        else:
            results = decode(beam_size=1)
            unsure = {
                row
                for row, (result, cap, tokenizer) in enumerate(
                    zip(results, caps, tokenizers, strict=True)
                )
                if _unsure(result, cap, tokenizer)
            }
            if unsure:
                # The whole batch again (one row on the CPU; a GPU batch costs about one).
                beamed = decode(beam_size=self.beam_size)
                results = [beamed[row] if row in unsure else r for row, r in enumerate(results)]
        transcripts: list[Transcript | None] = []
        for samples, cap, result, tokenizer, (language, probability), asked in zip(
            batch, caps, results, tokenizers, chosen, languages, strict=True
        ):
            tokens, text, avg_logprob = _read(result, tokenizer)
            if _looped(tokens, text, cap):
                transcripts.append(None)
                continue
            duration = samples.size / SAMPLE_RATE
            transcripts.append(
                Transcript(
                    text,
                    float(result.no_speech_prob),
                    float(avg_logprob),
                    duration,
                    language,
                    probability,
                    detected=not asked,
                )
            )
        return transcripts

    def _decode_full(
        self, model: WhisperModel, samples: np.ndarray, language: str | None = "en"
    ) -> Transcript:
        segments, info = model.transcribe(
            samples,
            language=language if model.model.is_multilingual else "en",
            beam_size=self.beam_size,
            without_timestamps=True,
            condition_on_previous_text=False,
            vad_filter=False,
        )
        # `segments` is lazy: decoding happens while it is consumed, here on the worker.
        texts, no_speech, logprob_sum, weight = [], 0.0, 0.0, 0
        for segment in segments:
            texts.append(segment.text.strip())
            no_speech = max(no_speech, segment.no_speech_prob)
            logprob_sum += segment.avg_logprob * (len(segment.tokens) + 1)
            weight += len(segment.tokens) + 1
        duration = samples.size / SAMPLE_RATE
        if not texts:
            return Transcript.empty(duration, info.language)
        text = " ".join(texts).strip()
        detected = language is None and model.model.is_multilingual
        return Transcript(
            text,
            no_speech,
            logprob_sum / weight,
            duration,
            info.language,
            float(info.language_probability),
            detected=detected,
        )

    def _require(self) -> WhisperModel:
        if self._model is None:
            raise RuntimeError("FasterWhisperSTT.load() must finish before transcribe()")
        return self._model


@functools.lru_cache(maxsize=64)
def _read(
    result: ctranslate2.models.WhisperGenerationResult, tokenizer: Tokenizer
) -> tuple[list[int], str, float]:
    """A generation's tokens, text and mean log-probability per token."""
    tokens = [t for t in result.sequences_ids[0] if t < tokenizer.eot]
    # CTranslate2 scores are length-normalised: back to a per-token mean as in
    # faster-whisper (which counts the end-of-text token too).
    avg_logprob = result.scores[0] * len(tokens) / (len(tokens) + 1) if tokens else 0.0
    return tokens, tokenizer.decode(tokens).strip(), avg_logprob


def _looped(tokens: list[int], text: str, cap: int) -> bool:
    return len(tokens) >= cap or repeats_a_phrase(text)


def _unsure(
    result: ctranslate2.models.WhisperGenerationResult, cap: int, tokenizer: Tokenizer
) -> bool:
    """A greedy transcript worth the beam: unsure words, or a loop."""
    tokens, text, avg_logprob = _read(result, tokenizer)
    return _looped(tokens, text, cap) or (bool(tokens) and avg_logprob < GREEDY_MIN_LOGPROB)


def _tokenizer(model: WhisperModel, language: str) -> Tokenizer:
    return Tokenizer(model.hf_tokenizer, model.model.is_multilingual, "transcribe", language)


def _languages(
    model: WhisperModel, encoded: ctranslate2.StorageView, asked: list[str | None]
) -> list[tuple[str, float]]:
    """Each window's language and its probability: as asked, "en" for an English-only
    model, else Whisper's most likely one (detected only where none was asked)."""
    if not model.model.is_multilingual:
        return [("en", 1.0)] * len(asked)
    chosen: list[tuple[str, float]] = [(a, 1.0) if a else ("", 0.0) for a in asked]
    unknown = [i for i, a in enumerate(asked) if not a]
    if unknown:
        # Detection runs on the whole batch's encoder output (it is one call), then the
        # rows that asked for a language keep theirs.
        detected = model.model.detect_language(encoded)
        for i in unknown:
            token, probability = detected[i][0]
            chosen[i] = (token.strip("<|>"), float(probability))
    return chosen


def resolve_device(device: str) -> str:
    """`auto`: CUDA where CTranslate2 sees a GPU, else the CPU; `cuda` without one fails."""
    gpus = ctranslate2.get_cuda_device_count()
    if device == "auto":
        return "cuda" if gpus else "cpu"
    if device == "cuda" and not gpus:
        raise EngineUnavailable(
            "HARK_STT_DEVICE=cuda, but CTranslate2 sees no CUDA GPU (driver, CUDA 12 "
            "runtime and cuDNN 9 are needed); use HARK_STT_DEVICE=cpu or auto"
        )
    return device


def compute_type_for(device: str) -> str:
    """int8 on the CPU (4x less memory traffic, same words here), float16 on a GPU."""
    return "float16" if device == "cuda" else "int8"


def repeats_a_phrase(text: str, words: int = REPEAT_MIN_WORDS) -> bool:
    """True when a run of `words` words occurs twice: Whisper's loop signature.

    A user who really repeats four words in one turn costs only a second decode.
    """
    tokens = [w.strip(".,!?;:\"'").lower() for w in text.split()]
    seen: set[tuple[str, ...]] = set()
    for start in range(len(tokens) - words + 1):
        gram = tuple(tokens[start : start + words])
        if gram in seen:
            return True
        seen.add(gram)
    return False


def packaged_model() -> Path:
    """The packaged tiny.en directory, after checking model.bin's sha256."""
    return tiny_en_dir()
