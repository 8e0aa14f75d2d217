"""Whether a held sound is the bot's own words coming back: the reply's known text.

The echo listener's last resort. While a call's echo is still unknown, a voice that
every acoustic rule missed (the onset check, the voice rule, the quiet-hold rule: one
chance waveform peak disables the last two) is held to the end of the reply's echo and
was then dropped as "too little to tell" (what was sent explains a reverberant room's
echo as poorly as it explains a voice). Once in ~5 full test runs that was a user's
interruption, lost, and the call waited for an answer that never came.

The words tell them apart where the waveforms cannot: Whisper hears an echo as the reply
it is ("The train to Boston leaves at half past 6"), and a question as the question.
Offline, on the forced case (tests/test_own_words.py's scenario, 8 replies each as room
echo, bare echo and an echo-free question at -10 dB): the share of the transcript's
words found in the reply's text was 0.88-1.00 for all 16 echo holds and 0.00 for all 8
questions. A hold whose words are mostly not the bot's is replayed; one with no
words, or mostly the bot's, is dropped as before.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

import numpy as np

from server.engines.base import SpeechToText

log = logging.getLogger("hark.echo")

OWN_SHARE = 0.5  # of a hold's transcribed words found in what the bot said: its echo

_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")
# Words any two English sentences share: counted, they made "Stop. What is the capital of
# France?" 3/7 a story's own words. Left out where a transcript has others.
_COMMON = frozenset(
    "a an the and or but so of to in on at by for from with as is are was were be been "
    "it its this that there i me my you your we he she they them his her not no do did "
    "what".split()
)
# Whisper writes numbers as digits, an LLM's reply mostly as words ("half past 6").
_NUMBERS = dict(
    enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen"
        " fourteen fifteen sixteen seventeen eighteen nineteen twenty".split()
    )
)


def words(text: str) -> list[str]:
    """Lower-case words, numbers up to twenty spelt out."""
    found = _WORD.findall(text.lower())
    return [_NUMBERS.get(int(w), w) if w.isdecimal() and len(w) < 3 else w for w in found]


def own_share(heard: str, said: str) -> float:
    """The share of `heard`'s words that are among `said`'s (1.0 when it has none),
    common words left out where it has others."""
    heard_words = words(heard)
    if not heard_words:
        return 1.0
    content = [w for w in heard_words if w not in _COMMON]
    known = set(words(said))
    judged = content or heard_words
    return sum(word in known for word in judged) / len(judged)


class OwnWords:
    """`are_own(audio)`: transcribed (`stt`), are its words the bot's own (`said()`: the
    text of the replies whose echo the audio could hold)?"""

    def __init__(self, stt: SpeechToText, said: Callable[[], str]) -> None:
        self._stt = stt
        self._said = said

    async def are_own(self, audio: np.ndarray) -> bool:
        try:
            heard = await self._stt.transcribe_detailed(audio)
        except Exception as exc:  # no words to judge by: dropped, as without this check
            log.warning("held voice could not be transcribed (%r); dropped as echo", exc)
            return True
        share = own_share(heard.text, self._said()) if heard.has_words else 1.0
        # What was said stays out of the log (HARK_LOG_TRANSCRIPTS covers the call log).
        log.info(
            "held voice judged by its words: %d, %.0f%% of them the bot's own (%.1f s)",
            len(words(heard.text)) if heard.has_words else 0,
            100 * share,
            len(audio) / 16000,
        )
        log.debug("held voice heard as %r", heard.text)
        return share >= OWN_SHARE
