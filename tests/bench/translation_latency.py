"""Live interpretation latency: the end of each source sentence → its first translated audio.

    nice -n 10 .venv/bin/python -m tests.bench.translation_latency [--rounds 2]
        [--pairs es-en,en-pt,pt-en] [--voice espeak|kokoro]

A real server (packaged models) and OpenAI's Python SDK translations client. Per pair,
one session per round hears a talk of several espeak-ng sentences with 1.2 s pauses,
appended in 200 ms chunks at real-time pace, as a microphone sends them. For each
sentence, the moment the chunk holding its last voiced sample was sent is its speech
end; its translation is the output whose `elapsed_ms` falls between that end and the
next sentence. Printed per pair: speech end → first translated text and → first
translated audio (p50/p95), and how many translations began before the speaker had
finished the next sentence (interpretation, not question and answer). It never fails.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import numpy as np

from tests.server_process import running_server
from tests.translation_client import CHUNK_MS, RATE, SdkTranslation, espeak, wait_for_translation
from tests.ws_client import last_voiced_s

PAUSE_S = 1.2
TALKS = {
    ("es", "en"): [
        "¿Dónde está la estación de tren?",
        "Quiero comprar un billete, por favor.",
        "Muchas gracias y buenas noches.",
    ],
    ("en", "pt"): [
        "Where is the train station?",
        "I would like a glass of water, please.",
        "Thank you very much and good night.",
    ],
    ("pt", "en"): [
        "Obrigado, boa noite.",
        "Eu quero uma água, por favor.",
        "Bom dia, tudo bem?",
    ],
}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def first_of(t: SdkTranslation, type_: str, end_ms: float, next_start_ms: float) -> float | None:
    """Arrival of the first `type_` event whose `elapsed_ms` (the segment's end, rounded
    up to 200 ms) is this sentence's: at or after its end, before the next one's."""
    for received in t.of(type_):
        elapsed = received.data["elapsed_ms"]
        if end_ms <= elapsed + CHUNK_MS and elapsed < next_start_ms + CHUNK_MS:
            return received.at
    return None


async def one_talk(url: str, key: str, pair: tuple[str, str]) -> tuple[list, list, int]:
    source, target = pair
    sentences = [espeak(text, source) for text in TALKS[pair]]
    gap = np.zeros(int(RATE * PAUSE_S), np.int16)
    parts, ends_ms, starts_ms, position = [np.zeros(RATE // 2, np.int16)], [], [], RATE // 2
    for pcm in sentences:
        starts_ms.append(position * 1000 // RATE)
        ends_ms.append((position / RATE + last_voiced_s(pcm, RATE)) * 1000)
        parts += [pcm, gap]
        position += len(pcm) + len(gap)
    parts.append(np.zeros(RATE * 2, np.int16))
    t = SdkTranslation(url, key)
    await t.connect()
    try:
        transcription = {"model": "whisper-1", "language": source}
        await t.update(
            {"audio": {"input": {"transcription": transcription}, "output": {"language": target}}}
        )
        await t.wait_for("session.updated")
        started = time.monotonic()
        await t.stream(np.concatenate(parts))
        await t.close()
    finally:
        await t.disconnect()

    def sent_at(ms: float) -> float:  # when the 200 ms chunk holding input `ms` went out
        return started + (ms // CHUNK_MS) * CHUNK_MS / 1000

    text_s, audio_s, early = [], [], 0
    for index, end in enumerate(ends_ms):
        upper = starts_ms[index + 1] if index + 1 < len(starts_ms) else float("inf")
        text_at = first_of(t, "session.output_transcript.delta", end, upper)
        audio_at = first_of(t, "session.output_audio.delta", end, upper)
        if text_at is not None:
            text_s.append(text_at - sent_at(end))
        if audio_at is not None:
            audio_s.append(audio_at - sent_at(end))
            if index + 1 < len(ends_ms) and audio_at < sent_at(ends_ms[index + 1]):
                early += 1
    print(f"  {source}→{target}: {t.text('session.output_transcript.delta')!r}", flush=True)
    return text_s, audio_s, early


async def run(url: str, key: str, rounds: int, pairs: list[tuple[str, ...]]) -> None:
    for pair in pairs:
        texts, audios, early, followed = [], [], 0, 0
        for _ in range(rounds):
            text_s, audio_s, ahead = await one_talk(url, key, pair)
            texts += text_s
            audios += audio_s
            early += ahead
            followed += len(TALKS[pair]) - 1
        n = len(TALKS[pair]) * rounds
        print(
            f"{pair[0]}→{pair[1]}: speech end → first text p50 {statistics.median(texts):.2f} s"
            f" p95 {percentile(texts, 0.95):.2f} s; → first audio p50 "
            f"{statistics.median(audios):.2f} s p95 {percentile(audios, 0.95):.2f} s "
            f"({len(audios)}/{n} sentences spoken; {early}/{followed} began before the "
            "next sentence ended)",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--pairs", default="es-en,en-pt,pt-en", help="e.g. en-pt")
    parser.add_argument("--voice", choices=("espeak", "kokoro"), default="espeak")
    args = parser.parse_args()
    pairs = [tuple(pair.split("-")) for pair in args.pairs.split(",")]
    env = {
        "HARK_JWT_SECRET": "bench-signing-secret-0123456789abcdef",
        "HARK_TRANSLATION_VOICE": args.voice,
    }
    with running_server(env) as server:
        print(f"translation: {wait_for_translation(server.url)['translation']}", flush=True)
        asyncio.run(run(server.url, server.api_key, args.rounds, pairs))


if __name__ == "__main__":
    main()
