"""Whisper tiny.en settings compared on real speech: latency and word error rate, as JSON.

    .venv/bin/python -m tests.bench.stt_speed [--reps 1] [--only NAME ...]

Twenty spoken questions (Piper, 1.5-3.5 s with the segmenter's padding), clean and with
white noise at 10 and 5 dB SNR; then noises and backchannels through the shipped setting, with
the confidence the false-interruption filter reads; then two transcriptions at once (a
preemptive one and the final one). Timings depend on what else the machine runs: compare
settings within one run. It prints; it never fails on a number.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from faster_whisper import WhisperModel

from server.engines.faster_whisper_stt import FasterWhisperSTT, Transcript, packaged_model
from tests.bench.stt_corpus import (
    BACKCHANNELS,
    QUESTIONS,
    noises,
    padded,
    question_audio,
    with_noise,
    word_errors,
)
from tests.speech import speak

Decode = Callable[[np.ndarray], str]


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))], 1)


def as_float(pcm: np.ndarray) -> np.ndarray:
    return pcm.astype(np.float32) / 32768.0


def faster_whisper_call(model: WhisperModel, **options: Any) -> Decode:
    """faster-whisper's own transcribe() with `options` on top of Hark's fixed ones."""

    def decode(samples: np.ndarray) -> str:
        settings = {"beam_size": 5, **options}
        segments, _ = model.transcribe(
            samples,
            language="en",
            without_timestamps=True,
            condition_on_previous_text=False,
            vad_filter=False,
            **settings,
        )
        text = " ".join(s.text.strip() for s in segments).strip()
        # chunk_length is stored in the shared feature extractor: put the 30 s back.
        extractor = model.feature_extractor
        extractor.n_samples = extractor.chunk_length * extractor.sampling_rate
        extractor.nb_max_frames = extractor.n_samples // extractor.hop_length
        return text

    return decode


def engine_call(engine: FasterWhisperSTT, model: WhisperModel) -> Decode:
    return lambda samples: engine.decode(model, samples).text


def variants(reference: WhisperModel, one_thread: WhisperModel) -> dict[str, Decode]:
    shipped = FasterWhisperSTT(beam_size=5)
    beam = FasterWhisperSTT(beam_size=5, greedy_first=False)
    return {
        "30s window, beam 5 (before)": faster_whisper_call(reference),
        "30s window, beam 1": faster_whisper_call(reference, beam_size=1),
        "30s window, beam 5, no temperature fallback": faster_whisper_call(
            reference, temperature=0.0
        ),
        "30s window, beam 5, chunk_length=10": faster_whisper_call(reference, chunk_length=10),
        "10s window, greedy, beam 5 where unsure (shipped)": engine_call(shipped, reference),
        "10s window, beam 5": engine_call(beam, reference),
        "10s window, beam 3": engine_call(FasterWhisperSTT(beam_size=3), reference),
        "10s window, beam 1": engine_call(FasterWhisperSTT(beam_size=1), reference),
        "10s window, beam 5, cpu_threads=1": engine_call(beam, one_thread),
    }


def measure(
    decoders: dict[str, Decode], clips: list[tuple[str, str, np.ndarray]], reps: int
) -> dict[str, dict]:
    """Every setting on every clip, interleaved clip by clip, so that load from other
    processes falls on all settings alike."""
    for decode in decoders.values():
        decode(clips[0][2])  # warm each setting's buffers
    times: dict[str, list[float]] = {name: [] for name in decoders}
    conditions = sorted({condition for _, condition, _ in clips})
    errors = {name: {c: [0, 0] for c in conditions} for name in decoders}
    misheard: dict[str, list[str]] = {name: [] for name in decoders}
    for rep in range(reps):
        for text, condition, samples in clips:
            for name, decode in decoders.items():
                started = time.perf_counter()
                heard = decode(samples)
                times[name].append((time.perf_counter() - started) * 1000)
                if rep == 0:
                    wrong, total = word_errors(text, heard)
                    errors[name][condition][0] += wrong
                    errors[name][condition][1] += total
                    if wrong:
                        misheard[name].append(f"{condition}: {heard}")
    return {
        name: {
            "median_ms": round(statistics.median(times[name]), 1),
            "p95_ms": percentile(times[name], 95),
            **{
                f"wer_{condition}": round(wrong / total, 3)
                for condition, (wrong, total) in errors[name].items()
            },
            "misheard": misheard[name],
        }
        for name in decoders
    }


def confidence(transcript: Transcript) -> dict[str, Any]:
    return {
        "text": transcript.text,
        "no_speech_prob": round(transcript.no_speech_prob, 3),
        "avg_logprob": round(transcript.avg_logprob, 3),
    }


async def concurrency(engine: FasterWhisperSTT, samples: np.ndarray, reps: int) -> dict:
    """One transcription alone vs. two submitted together (a preemptive one and the final
    one), alternating so other load hits both alike. The engine has one worker thread,
    so the second waits for the first."""
    alone, second = [], []
    for _ in range(reps):
        started = time.perf_counter()
        await engine.transcribe(samples)
        alone.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        first = asyncio.ensure_future(engine.transcribe(samples))
        await asyncio.sleep(0)  # the preemptive call is queued first
        await engine.transcribe(samples)
        second.append((time.perf_counter() - started) * 1000)
        await first
    return {
        "alone_median_ms": round(statistics.median(alone), 1),
        "final_behind_preemptive_median_ms": round(statistics.median(second), 1),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reps", type=int, default=1, help="timed passes over the clips")
    parser.add_argument("--only", nargs="*", default=[], help="settings whose name contains")
    args = parser.parse_args()

    engine = FasterWhisperSTT(beam_size=5)
    await engine.load()
    reference = engine._require()
    path = str(engine.model_path or packaged_model())
    one_thread = WhisperModel(path, device="cpu", compute_type="int8", cpu_threads=1)

    clips: list[tuple[str, str, np.ndarray]] = []
    for seed, text in enumerate(QUESTIONS):
        audio = question_audio(text)
        clips.append((text, "clean", as_float(audio)))
        for snr in (10, 5):
            clips.append((text, f"noisy_{snr}db", as_float(with_noise(audio, snr, seed))))
    seconds = [c[2].size / 16000 for c in clips if c[1] == "clean"]

    chosen = {
        name: decode
        for name, decode in variants(reference, one_thread).items()
        if not args.only or any(part in name for part in args.only)
    }
    table = measure(chosen, clips, args.reps)
    for name, row in table.items():
        summary = {k: v for k, v in row.items() if k != "misheard"}
        print(f"{name:45s} {json.dumps(summary)}", flush=True)

    sounds = {name: await engine.transcribe_detailed(pcm) for name, pcm in noises().items()}
    words = {text: await engine.transcribe_detailed(padded(speak(text))) for text in BACKCHANNELS}
    questions = [await engine.transcribe_detailed(samples) for _, _, samples in clips]
    report = {
        "clips": len(clips),
        "audio_s": [round(min(seconds), 2), round(max(seconds), 2)],
        "settings": table,
        "noises": {name: {**confidence(t), "has_words": t.has_words} for name, t in sounds.items()},
        "backchannels": {
            text: {**confidence(t), "has_words": t.has_words} for text, t in words.items()
        },
        "questions_clean_and_noisy": {
            "no_speech_prob_max": round(max(t.no_speech_prob for t in questions), 3),
            "avg_logprob_min": round(min(t.avg_logprob for t in questions), 3),
            "has_words": sum(t.has_words for t in questions),
        },
        "concurrency": await concurrency(engine, clips[0][2], 10),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
