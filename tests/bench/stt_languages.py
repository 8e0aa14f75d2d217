"""Whisper base on six languages: word (or, for Chinese, character) error rate and speed.

Each sentence is spoken by espeak-ng and by Kokoro-82M (the voices Hark replies with),
padded as the segmenter pads a turn, and transcribed by the packaged Whisper base twice:
with the language given (a session that sets `audio.input.transcription.language`) and
detected (one that does not). Printed per language and voice: the error rate, how often
the language was detected right, and the mean transcription time and real-time factor;
for Kokoro also its synthesis real-time factor. Robotic espeak-ng speech is harder for
Whisper than people are; it is a floor, not a claim. Run:

    PYTHONPATH=$PWD .venv/bin/python -m tests.bench.stt_languages [--voices espeak,kokoro] [--show]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import tempfile
import time
import unicodedata
from pathlib import Path

import numpy as np

from media.resample import Resampler
from server.engines.faster_whisper_stt import FasterWhisperSTT
from server.engines.kokoro_tts import KokoroTTS
from tests.speech import espeak, silence

RATE = 16_000

SENTENCES: dict[str, list[str]] = {
    "es": [
        "Perdone, ¿dónde está la estación de tren?",
        "Quiero reservar una mesa para dos personas esta noche.",
        "¿Qué tiempo hará mañana en Madrid?",
        "Mi hermana vive en una casa cerca del río.",
        "¿Cuánto cuesta un billete de ida y vuelta?",
    ],
    "de": [
        "Entschuldigung, wo ist der Bahnhof?",
        "Ich möchte heute Abend einen Tisch für zwei Personen reservieren.",
        "Wie wird das Wetter morgen in Berlin?",
        "Meine Schwester wohnt in einem Haus am Fluss.",
        "Wie viel kostet eine Fahrkarte hin und zurück?",
    ],
    "fr": [
        "Excusez-moi, où est la gare?",
        "Je voudrais réserver une table pour deux personnes ce soir.",
        "Quel temps fera-t-il demain à Paris?",
        "Ma sœur habite dans une maison près de la rivière.",
        "Combien coûte un billet aller-retour?",
    ],
    "pt": [
        "Com licença, onde fica a estação de trem?",
        "Eu gostaria de reservar uma mesa para duas pessoas esta noite.",
        "Como vai estar o tempo amanhã em Lisboa?",
        "A minha irmã mora numa casa perto do rio.",
        "Quanto custa uma passagem de ida e volta?",
    ],
    "it": [
        "Scusi, dov'è la stazione dei treni?",
        "Vorrei prenotare un tavolo per due persone stasera.",
        "Che tempo farà domani a Roma?",
        "Mia sorella abita in una casa vicino al fiume.",
        "Quanto costa un biglietto di andata e ritorno?",
    ],
    "zh": [
        "请问火车站在哪里？",
        "我想预订今天晚上两个人的桌子。",
        "明天北京的天气怎么样？",
        "我姐姐住在河边的一座房子里。",
        "往返票多少钱？",
    ],
}
ESPEAK_VOICES = {"es": "es", "de": "de", "fr": "fr-fr", "pt": "pt-br", "it": "it", "zh": "cmn"}


def tokens(text: str, language: str) -> list[str]:
    """Lower case, no punctuation; Chinese is compared character by character (CER)."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = re.sub(r"[^\w\s']+", " ", text)
    if language == "zh":
        return [c for c in text if not c.isspace()]
    return text.split()


def errors(reference: list[str], hypothesis: list[str]) -> int:
    row = list(range(len(hypothesis) + 1))
    for i, word in enumerate(reference, 1):
        prev, row[0] = row[0], i
        for j, other in enumerate(hypothesis, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (word != other))
    return row[-1]


def padded(pcm: np.ndarray) -> np.ndarray:
    return np.concatenate([silence(300), pcm, silence(400)])


def to_16k(pcm: np.ndarray, rate: int) -> np.ndarray:
    resampler = Resampler(RATE)
    return np.concatenate([resampler.pcm(pcm, rate), resampler.flush()])


async def kokoro_speech(tts: KokoroTTS, text: str, language: str) -> tuple[np.ndarray, float]:
    started = time.perf_counter()
    chunks = [c async for c in tts.synthesize(text, f"{language}-alpha")]
    pcm = np.concatenate(chunks)
    return to_16k(pcm, tts.sample_rate), (time.perf_counter() - started) / (pcm.size / 24_000)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--voices", default="espeak,kokoro")
    parser.add_argument("--languages", default=",".join(SENTENCES))
    parser.add_argument("--beam-size", type=int, default=5)
    parser.add_argument("--show", action="store_true", help="print each transcript")
    args = parser.parse_args()
    cache = Path(tempfile.gettempdir()) / "hark-bench-cache"
    stt = FasterWhisperSTT(model="base", beam_size=args.beam_size, cache_dir=cache)
    await stt.load()
    kokoro = KokoroTTS(cache_dir=cache) if "kokoro" in args.voices else None
    if kokoro is not None:
        await kokoro.load()
    print(f"Whisper base int8, beam {args.beam_size}, 2 CPU threads; error rate: WER (zh: CER)")
    header = "lang voice    given: err    detected: err  lang ok   stt s  stt RTF  tts RTF"
    print(header)
    for language in args.languages.split(","):
        for voice in args.voices.split(","):
            given_err = detected_err = total = right = 0
            seconds, rtfs, tts_rtfs = [], [], []
            for text in SENTENCES[language]:
                if voice == "espeak":
                    audio = padded(espeak(text, ESPEAK_VOICES[language]))
                else:
                    assert kokoro is not None
                    pcm, tts_rtf = await kokoro_speech(kokoro, text, language)
                    audio = padded(pcm)
                    tts_rtfs.append(tts_rtf)
                reference = tokens(text, language)
                started = time.perf_counter()
                given = await stt.transcribe_detailed(audio, language)
                took = time.perf_counter() - started
                detected = await stt.transcribe_detailed(audio)
                seconds.append(took)
                rtfs.append(took / (audio.size / RATE))
                given_err += errors(reference, tokens(given.text, language))
                detected_err += errors(reference, tokens(detected.text, language))
                total += len(reference)
                right += detected.language == language
                if args.show:
                    print(f"    {text} → {given.text} | [{detected.language}] {detected.text}")
            tts = f"{statistics.mean(tts_rtfs):8.2f}" if tts_rtfs else "       -"
            print(
                f"{language:4} {voice:8} {given_err / total:11.1%} {detected_err / total:14.1%}"
                f" {right:4d}/{len(SENTENCES[language])} {statistics.mean(seconds):7.2f}"
                f" {statistics.mean(rtfs):8.2f} {tts}"
            )


if __name__ == "__main__":
    asyncio.run(main())
