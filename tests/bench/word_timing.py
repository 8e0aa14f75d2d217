"""How close Piper's word ends (from its phoneme durations) are to where Whisper hears
each word end, against the proportional-by-characters estimate used without timings.

    .venv/bin/python -m tests.bench.word_timing [--reps 3]

For each sentence, Piper speaks it (durations vary run to run: VITS samples them), the
word ends come from `PiperTTS.synthesize_words`, and Whisper tiny.en's word timestamps on
the same audio are one reference (Whisper's own error is part of the figure: tiny.en puts
word ends late, into the following quiet). A sharper one where there is a pause: a word
before a comma or full stop ends where the audio goes quiet (the start of the nearest run
of >= 50 ms at 10 ms RMS < 100, within 300 ms). Prints median, p90 and max |error| in ms.
Also the cost of the word plan (per-word phonemization and alignment). Never fails.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import numpy as np

from server.engines.piper_tts import PiperTTS
from server.engines.piper_words import WordPlan
from tests.word_reference import heard_words, matched

SENTENCES = [
    "The dragon is a kind and gentle creature.",
    "It lives in the hills, far from town, and sleeps all day in a cave of gold.",
    "Paris is the capital of France, and it is lovely in the spring.",
    "Once upon a time, a brave knight rode out to find the dragon.",
    "I have twenty five apples, and my sister has three pears.",
    "The weather today is sunny with a light breeze from the west.",
    "Would you like me to tell you another story before you sleep?",
    "Dr. Smith bought 3 loaves of bread at the market on Tuesday.",
]


def quiet_starts(audio: np.ndarray, rate: int, level: float = 100.0) -> list[float]:
    """Where each run of >= 50 ms of quiet (10 ms frames under `level` RMS) begins, in ms."""
    step = rate // 100
    frames = [
        float(np.sqrt(np.mean(audio[i : i + step].astype(np.float64) ** 2)))
        for i in range(0, len(audio) - step + 1, step)
    ]
    starts, run = [], 0
    for i, rms in enumerate([*frames, level + 1]):
        if rms < level:
            run += 1
            continue
        if run >= 5 and i - run > 0:
            starts.append((i - run) * 10.0)
        run = 0
    return starts


async def measure(reps: int) -> None:
    piper = PiperTTS()
    await piper.load()
    rate = piper.sample_rate
    errors: list[float] = []
    proportional: list[float] = []
    plans: list[float] = []
    pauses: list[float] = []
    pauses_proportional: list[float] = []
    for _ in range(reps):
        for text in SENTENCES:
            chunks = [c async for c in piper.synthesize_words(text)]
            audio = np.concatenate([c.pcm for c in chunks])
            ends: dict[int, float] = {}
            offset = 0
            for c in chunks:
                for w in c.words or ():
                    ends[w.word] = (offset + w.sample) * 1000 / rate
                offset += len(c.pcm)
            words = text.split()
            reference = matched(words, heard_words(audio, rate))
            total_ms = len(audio) * 1000 / rate
            char_ends = np.cumsum([len(w) + 1 for w in words]) - 1
            for n, ref in reference.items():
                errors.append(ends[n] - ref)
                proportional.append(total_ms * char_ends[n] / len(text) - ref)
            quiet = quiet_starts(audio, rate)
            for n, word in enumerate(words):
                near = [q for q in quiet if abs(q - ends[n]) <= 300]
                if word[-1] in ",.!?" and near:
                    gap = min(near, key=lambda q: abs(q - ends[n]))
                    pauses.append(ends[n] - gap)
                    pauses_proportional.append(total_ms * char_ends[n] / len(text) - gap)
            started = time.perf_counter()
            WordPlan(piper._require(), text)
            plans.append((time.perf_counter() - started) * 1000)

    def show(name: str, values: list[float]) -> None:
        a = [abs(v) for v in values]
        print(
            f"{name:28s} words {len(a):4d}  median |err| {statistics.median(a):5.0f} ms"
            f"  p90 {np.percentile(a, 90):5.0f} ms  max {max(a):5.0f} ms"
            f"  mean signed {statistics.mean(values):+5.0f} ms"
        )

    print("against Whisper tiny.en word ends:")
    show("piper phoneme durations", errors)
    show("proportional to characters", proportional)
    print("against the quiet after a word at a comma or full stop:")
    show("piper phoneme durations", pauses)
    show("proportional to characters", pauses_proportional)
    print(f"word plan per sentence: median {statistics.median(plans):.1f} ms, max {max(plans):.1f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=3)
    asyncio.run(measure(parser.parse_args().reps))


if __name__ == "__main__":
    main()
