"""Spoken test material for the STT benchmark: questions, noises, and a word error rate.

Questions are what a user asks a voice assistant (1-4 s), spoken by Piper with the same
padding the segmenter hands to STT (300 ms before, a short silence after). A noisy copy at
a fixed SNR makes accuracy differences between settings show up. Noises (cough-like bursts,
clicks, breath) and backchannels are what the false-interruption filter must recognise.
"""

from __future__ import annotations

import re

import numpy as np

from tests.speech import silence, speak

RATE = 16000

QUESTIONS = [
    "What is the capital of France?",
    "Set a timer for ten minutes.",
    "How tall is Mount Everest?",
    "Tell me a joke.",
    "What's the weather like tomorrow in Boston?",
    "Who wrote Pride and Prejudice?",
    "Turn off the kitchen lights.",
    "How many ounces are in a pound?",
    "Remind me to call my mother at six.",
    "What time is it in Tokyo right now?",
    "Can you recommend a good science fiction book?",
    "How do I make a cup of green tea?",
    "What's the difference between a virus and bacteria?",
    "Play some relaxing music.",
    "Why is the ocean salty?",
    "Translate good morning into Spanish.",
    "How far away is the moon?",
    "What should I cook for dinner tonight?",
    "Spell the word necessary.",
    "Is it going to rain this weekend?",
]

BACKCHANNELS = ["Uh-huh.", "Mm-hmm.", "Yeah.", "Okay.", "Right."]

_NUMBERS = {
    "zero": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
    "eleven": "11",
    "twelve": "12",
}


def padded(pcm: np.ndarray, before_ms: int = 300, after_ms: int = 400) -> np.ndarray:
    return np.concatenate([silence(before_ms), pcm, silence(after_ms)])


def question_audio(text: str) -> np.ndarray:
    return padded(speak(text))


def with_noise(pcm: np.ndarray, snr_db: float, seed: int) -> np.ndarray:
    """`pcm` plus white noise `snr_db` below the speech power (deterministic per seed)."""
    signal = pcm.astype(np.float64)
    voiced = signal[np.abs(signal) > 300]
    power = float(np.mean(voiced**2)) if voiced.size else 1e6
    noise = np.random.default_rng(seed).normal(0, np.sqrt(power / 10 ** (snr_db / 10)), pcm.size)
    return np.clip(signal + noise, -32768, 32767).astype(np.int16)


def noises() -> dict[str, np.ndarray]:
    """Non-speech sounds a microphone picks up, each 0.3-1.0 s, deterministic."""
    rng = np.random.default_rng(7)

    def burst(ms: int, amp: float, decay_ms: float) -> np.ndarray:
        n = ms * RATE // 1000
        env = np.exp(-np.arange(n) / (decay_ms * RATE / 1000))
        return rng.normal(0, amp, n) * env

    cough = np.concatenate([burst(180, 9000, 60), np.zeros(1600), burst(150, 7000, 50)])
    click = np.zeros(RATE // 2)
    for at in (0.05, 0.2, 0.33):
        start = int(at * RATE)
        click[start : start + 40] = rng.normal(0, 15000, 40)
    n = int(0.9 * RATE)
    breath = rng.normal(0, 1200, n) * np.sin(np.linspace(0, np.pi, n)) ** 2
    breath = np.convolve(breath, np.ones(8) / 8, mode="same")  # softer, low-passed hiss
    hum = 2000 * np.sin(2 * np.pi * 120 * np.arange(RATE // 2) / RATE)
    sounds = {"cough": cough, "clicks": click, "breath": breath, "hum": hum}
    return {name: padded(np.clip(s, -32768, 32767).astype(np.int16)) for name, s in sounds.items()}


def normalise(text: str) -> list[str]:
    """Lower case, no punctuation, number words as digits: what WER should compare."""
    words = re.sub(r"[^a-z0-9' ]+", " ", text.lower().replace("-", " ")).split()
    return [_NUMBERS.get(word, word) for word in words]


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(edit distance in words, reference length) after normalising both."""
    ref, hyp = normalise(reference), normalise(hypothesis)
    row = list(range(len(hyp) + 1))
    for i, word in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, other in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (word != other))
    return row[-1], len(ref)
