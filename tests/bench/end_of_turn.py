"""End of turn: Smart Turn v3.2 beside the word rules (semantic_vad), printed as JSON.

    nice -n 19 .venv/bin/python -m tests.bench.end_of_turn [--voices piper,espeak] [--out F]

Each sentence is spoken whole, and cut at the end of a word in its middle (the user
pausing mid-sentence: "What is the capital of …"), each followed by the silence that
makes a pause in Hark's segmenter (`media.segmenter.PAUSE_MS`). At that pause each judge
decides:

- `semantic`: Hark's own path; tiny.en transcribes the turn so far (the preemptive
  transcript, with the digital silence the server adds after it:
  `server.turns.transcriber.PAUSE_TAIL_S`), then `end_of_turn.completeness` reads it.
  Its latency is that transcript.
- `smart_turn`: the model on the audio (log-mel features + ONNX), on one thread.
- `both` (not wired in the server): finished when both say so, unfinished when both
  say so, else unsure; its latency is the later of the two, run side by side.

A false cut-off is a cut utterance judged finished (the turn would end after the short
wait, 250 ms at `auto`, in the middle of the sentence). A miss is a whole utterance not
judged finished (the reply waits the long wait). `unsure` (the rules' middle wait) is
counted apart. `end_delay_ms` is, for whole utterances, when the turn would end after
the pause began: the decision's latency or the wait it chose, whichever is later.
Timings depend on what else runs: compare the two within one run. Never fails.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import shutil
import statistics
import subprocess
import time
import wave
from dataclasses import dataclass

import numpy as np
from faster_whisper import WhisperModel

from media.resample import Resampler
from media.segmenter import PAUSE_MS
from server.engines.faster_whisper_stt import FasterWhisperSTT, packaged_model
from server.turns.end_of_turn import WAITS, completeness
from server.turns.smart_turn import SmartTurn
from server.turns.transcriber import PAUSE_TAIL_S
from tests.speech import silence, speak

# (sentence, how many words the cut keeps): cuts end on a word that leaves it unfinished.
SENTENCES: list[tuple[str, int]] = [
    ("What is the capital of France?", 5),
    ("Can you tell me how to get to the train station?", 7),
    ("I would like to book a table for two people tomorrow evening.", 7),
    ("Tell me a story about a dragon and a knight.", 5),
    ("How many legs does a spider have?", 3),
    ("What is the weather going to be like this weekend?", 6),
    ("Please remind me to call my mother at six.", 6),
    ("Which planet is the largest in the solar system?", 6),
    ("Explain how a rainbow forms after the rain.", 3),
    ("I think we should leave before the traffic gets bad.", 7),
    ("Who wrote the novel Pride and Prejudice?", 3),
    ("Set a timer for ten minutes.", 4),
    ("My flight leaves at nine, so I need a taxi.", 5),
    ("Could you recommend a good book about history?", 5),
]
WAIT = WAITS["auto"]


@dataclass
class Case:
    voice: str
    text: str
    whole: bool
    audio: np.ndarray  # int16, 16 kHz, ending in the pause's silence


def espeak(text: str) -> np.ndarray:
    out = subprocess.run(
        ["espeak-ng", "-v", "en-us", "--stdout", text], capture_output=True, check=True
    ).stdout
    with wave.open(io.BytesIO(out)) as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
        rate = w.getframerate()
    resampler = Resampler(16000)
    return np.concatenate([resampler.pcm(pcm, rate), resampler.flush()])


def cut_point(aligner: WhisperModel, pcm: np.ndarray, keep: int) -> int | None:
    """A sample index just past the `keep`-th word of `pcm`: Whisper's word timestamp,
    moved back 30 ms at a time while the audio before it still holds more words (tiny.en
    tends to place word ends late)."""
    samples = pcm.astype(np.float32) / 32768.0
    segments, _ = aligner.transcribe(samples, language="en", word_timestamps=True, beam_size=5)
    words = [w for s in segments for w in (s.words or [])]
    if len(words) < keep:
        return None
    cut = int(words[keep - 1].end * 16000) + 160
    for _ in range(20):
        segments, _ = aligner.transcribe(samples[:cut], language="en", beam_size=5)
        if len(" ".join(s.text for s in segments).split()) <= keep:
            return cut
        cut -= 480
    return None


def build_cases(voices: list[str], aligner: WhisperModel) -> list[Case]:
    speakers = {"piper": speak, "espeak": espeak}
    cases = []
    for voice in voices:
        for text, keep in SENTENCES:
            pcm = speakers[voice](text)
            cases.append(Case(voice, text, True, np.concatenate([pcm, silence(PAUSE_MS)])))
            at = cut_point(aligner, pcm, keep)
            if at is None:
                print(f"skipped the cut of {text!r} ({voice}): no clean word boundary")
                continue
            cut = pcm[:at]
            said = " ".join(text.split()[:keep]) + " …"
            cases.append(Case(voice, said, False, np.concatenate([cut, silence(PAUSE_MS)])))
    return cases


async def judge_semantic(stt: FasterWhisperSTT, case: Case) -> tuple[str, float, str]:
    started = time.perf_counter()
    tail = np.zeros(int(PAUSE_TAIL_S * 16000), np.int16)
    transcript = await stt.transcribe_detailed(np.concatenate([case.audio, tail]))
    text = transcript.text if transcript.has_words else ""
    verdict = completeness(text)
    return verdict, (time.perf_counter() - started) * 1000, text


async def judge_smart_turn(model: SmartTurn, case: Case) -> tuple[str, float, float]:
    started = time.perf_counter()
    probability = await model.predict(case.audio)
    verdict = "complete" if model.complete(probability) else "incomplete"
    return verdict, (time.perf_counter() - started) * 1000, probability


def both(semantic: str, smart: str) -> str:
    if semantic == smart == "complete":
        return "complete"
    return "incomplete" if semantic == smart == "incomplete" else "unsure"


def summary(rows: list[dict], judge: str) -> dict:
    cut = [r for r in rows if not r["whole"]]
    whole = [r for r in rows if r["whole"]]
    verdicts = [r[judge]["verdict"] for r in rows]
    latencies = [r[judge]["ms"] for r in rows]
    waits = [getattr(WAIT, r[judge]["verdict"]) for r in whole]
    ends = [max(w, r[judge]["ms"]) for w, r in zip(waits, whole, strict=True)]
    return {
        "false_cutoff_rate": round(
            sum(r[judge]["verdict"] == "complete" for r in cut) / max(len(cut), 1), 3
        ),
        "miss_rate": round(
            sum(r[judge]["verdict"] != "complete" for r in whole) / max(len(whole), 1), 3
        ),
        "unsure_on_cut": sum(r[judge]["verdict"] == "unsure" for r in cut),
        "unsure_on_whole": sum(r[judge]["verdict"] == "unsure" for r in whole),
        "decision_ms_p50": round(statistics.median(latencies), 1),
        "decision_ms_max": round(max(latencies), 1),
        "end_delay_ms_p50_whole": round(statistics.median(ends), 1),
        "verdicts": {v: verdicts.count(v) for v in sorted(set(verdicts))},
    }


async def run(voices: list[str]) -> dict:
    aligner = WhisperModel(str(packaged_model()), device="cpu", compute_type="int8")
    cases = build_cases(voices, aligner)
    del aligner
    stt = FasterWhisperSTT()
    await stt.load()
    model = SmartTurn.installed()
    await model.predict(cases[0].audio)  # warm both before timing
    await stt.transcribe_detailed(cases[0].audio)
    rows = []
    for case in cases:
        semantic, semantic_ms, heard = await judge_semantic(stt, case)
        smart, smart_ms, probability = await judge_smart_turn(model, case)
        rows.append(
            {
                "voice": case.voice,
                "text": case.text,
                "whole": case.whole,
                "semantic": {"verdict": semantic, "ms": round(semantic_ms, 1), "heard": heard},
                "smart_turn": {
                    "verdict": smart,
                    "ms": round(smart_ms, 1),
                    "probability": round(probability, 3),
                },
                "both": {"verdict": both(semantic, smart), "ms": max(semantic_ms, smart_ms)},
            }
        )
    judges = ("semantic", "smart_turn", "both")
    by_voice = {
        voice: {j: summary([r for r in rows if r["voice"] == voice], j) for j in judges}
        for voice in voices
    }
    return {
        "cases": {"whole": sum(c.whole for c in cases), "cut": sum(not c.whole for c in cases)},
        "waits_ms": {
            "complete": WAIT.complete,
            "unsure": WAIT.unsure,
            "incomplete": WAIT.incomplete,
        },
        **{judge: summary(rows, judge) for judge in judges},
        "by_voice": {
            voice: {j: {k: v for k, v in s.items() if k.endswith("rate")} for j, s in r.items()}
            for voice, r in by_voice.items()
        },
        "rows": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_voices = "piper,espeak" if shutil.which("espeak-ng") else "piper"
    parser.add_argument("--voices", default=default_voices)
    parser.add_argument("--out", help="also write the JSON here")
    args = parser.parse_args()
    report = asyncio.run(run(args.voices.split(",")))
    text = json.dumps(report, indent=1)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    brief = {k: v for k, v in report.items() if k != "rows"}
    print(json.dumps(brief, indent=1))
    for row in report["rows"]:
        sem, st = row["semantic"], row["smart_turn"]
        kind = "whole" if row["whole"] else "cut  "
        print(
            f"{row['voice']:6} {kind} st={st['probability']:.2f} {st['verdict']:10} "
            f"sem={sem['verdict']:10} {row['text']!r} heard {sem['heard']!r}"
        )


if __name__ == "__main__":
    main()
