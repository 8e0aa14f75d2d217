"""Word ends from the real Piper voice's phoneme durations, and the fallbacks around them."""

from __future__ import annotations

from collections.abc import AsyncIterator

import numpy as np
import pytest

from server.engines import piper_words
from server.engines.piper_tts import PiperTTS
from server.engines.word_timing import TimedAudio, WordEnd, timed_audio, token_spans


@pytest.fixture(scope="module")
async def piper() -> PiperTTS:
    engine = PiperTTS()
    await engine.load()
    return engine


async def ends_of(piper: PiperTTS, text: str, speed: float = 1.0):
    """The reply's audio and each word's end in it (samples from the start)."""
    chunks = [c async for c in timed_audio(piper, text, None, speed)]
    ends: dict[int, int] = {}
    offset = 0
    for chunk in chunks:
        assert chunk.words is not None, "Piper gave no word timings (is onnx installed?)"
        for w in chunk.words:
            assert 0 <= w.sample <= len(chunk.pcm)
            ends[w.word] = offset + w.sample
        offset += len(chunk.pcm)
    return np.concatenate([c.pcm for c in chunks]), ends


def last_loud(audio: np.ndarray, level: int = 500) -> int:
    return int(np.flatnonzero(np.abs(audio.astype(np.int32)) > level)[-1])


SENTENCES = [
    "The dragon is a kind and gentle creature.",
    "It lives in the hills, far from town, and sleeps all day!",
    "I have 25 apples — and two pears. Would you like one?",
]


@pytest.mark.slow
@pytest.mark.parametrize("text", SENTENCES)
async def test_every_word_ends_in_order_inside_the_audio(piper: PiperTTS, text: str) -> None:
    audio, ends = await ends_of(piper, text)
    words = token_spans(text)
    assert sorted(ends) == list(range(len(words))), "a word has no end"
    times = [ends[n] for n in range(len(words))]
    assert times == sorted(times)
    assert 0 < times[0] and times[-1] <= len(audio)
    # The last word ends with the last sound, not in the trailing silence or before it.
    rate = piper.sample_rate
    assert abs(times[-1] - last_loud(audio)) < 0.12 * rate
    # Real words take time: no two content words end at the same sample.
    assert len(set(times)) >= len(times) - 1  # "25 apples —": the dash shares its word's end


@pytest.mark.slow
async def test_words_espeak_joins_still_get_their_own_ends(piper: PiperTTS) -> None:
    # espeak-ng speaks "in the" as one phoneme word (ɪnðə); each text word still ends.
    _, ends = await ends_of(piper, "It lives in the hills.")
    assert ends[1] < ends[2] < ends[3] < ends[4]


@pytest.mark.slow
async def test_faster_speech_ends_its_words_sooner(piper: PiperTTS) -> None:
    _, slow = await ends_of(piper, SENTENCES[0])
    _, fast = await ends_of(piper, SENTENCES[0], speed=1.5)
    assert fast[7] < 0.8 * slow[7]


@pytest.mark.slow
async def test_plain_synthesize_still_yields_pcm_per_sentence(piper: PiperTTS) -> None:
    plain = [c async for c in piper.synthesize(SENTENCES[2])]
    assert len(plain) == 2 and all(c.dtype == np.int16 and c.ndim == 1 for c in plain)


class FakePlainTTS:
    """A fake engine with only `synthesize`: no word timings."""

    name = "fake-plain"
    sample_rate = 16000

    async def load(self) -> None:
        pass

    async def synthesize(self, text: str, voice: str | None = None, speed: float = 1.0):
        yield np.zeros(160, dtype=np.int16)


async def test_an_engine_without_timings_gives_none() -> None:
    chunks: AsyncIterator[TimedAudio] = timed_audio(FakePlainTTS(), "hi there", None, 1.0)
    got = [c async for c in chunks]
    assert len(got) == 1 and got[0].words is None and len(got[0].pcm) == 160


def test_shifting_word_ends_clamps_them_to_the_kept_audio() -> None:
    chunk = TimedAudio(np.zeros(100, np.int16), (WordEnd(0, 30), WordEnd(1, 90)))
    assert chunk.shifted(20, 60) == (WordEnd(0, 10), WordEnd(1, 60))
    assert TimedAudio(np.zeros(4, np.int16)).shifted(1, 3) is None


def test_unplaced_words_are_spread_between_their_neighbours() -> None:
    # sounds: 3, 2 (unplaced), 2 (unplaced), 3 over sounds 3..11: 9 * 2/7 and 9 * 4/7
    assert piper_words._fill([2, None, None, 11], [3, 2, 2, 3], 12) == [2, 5, 7, 11]
    # a dash (-2) ends with the word before it; trailing unplaced words run to the end
    assert piper_words._fill([2, -2, None], [3, 0, 4], 8) == [2, 2, 7]
    # never backwards
    assert piper_words._fill([5, 3, 9], [1, 1, 1], 10) == [5, 5, 9]
