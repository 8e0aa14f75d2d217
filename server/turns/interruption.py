"""Is the user really taking the turn? Pause first, decide soon after, resume if not.

Cancelling a reply at every speech onset makes coughs, clicks and "uh-huh" cut the
assistant off (LiveKit #4039, pipecat #1391). Hark pauses the reply's audio at onset,
which is instant and loses nothing, then confirms the interruption when the speech has
lasted `min_duration_ms` and its transcript so far holds real words (a long "mmm-hmm"
is not a turn), or has gone on for twice that whatever Whisper heard, and otherwise
resumes the reply where it stopped. A pause that no evidence confirms within
`false_interruption_timeout_ms` resumes too, so the assistant can never stay paused.
"""

from __future__ import annotations

import enum
import re

from server.engines.base import Transcript
from server.turns.options import InterruptionOptions

# Listening noises people make while someone else talks, and what Whisper tiny writes
# for breaths, clicks and coughs. None of them is a bid for the turn.
BACKCHANNELS = frozenset(
    """uh huh uh-huh mm mhm mm-hmm mmhmm hmm hm um umm uh ah oh aha yeah yep yes yup
    okay ok right sure cool nice wow you thank thanks bye""".split()
)
# What Whisper writes for a hum or a breath ("And", "All.", "I"): not words on their own.
FILLERS = frozenset("and all so the".split())
_WORD = re.compile(r"[A-Za-z'-]+")


# Silence after wordless speech over a reply before it is judged noise and the reply
# resumes: the gaps inside "Wait, stop, ..." reach ~200 ms, a cough is over by then.
NOISE_SILENCE_MS = 250


def meaningful_words(text: str) -> list[str]:
    """The words of `text` that are not backchannels or noise transcriptions. Single
    letters ("M. H.") and words in capitals ("NMR", "MM") are how Whisper spells a hum."""
    words = [
        w.lower()
        for w in _WORD.findall(text)
        if len(w.strip("-'")) > 1 and not w.isupper() and w.lower() not in BACKCHANNELS
    ]
    return [] if all(w in FILLERS for w in words) else words


class Verdict(enum.Enum):
    UNDECIDED = "undecided"
    CONFIRMED = "confirmed"  # the user took the turn: cancel the reply
    FALSE = "false"  # noise or a backchannel: resume the reply


class PendingInterruption:
    """One paused reply waiting for evidence. Times are seconds on one monotonic clock."""

    def __init__(self, options: InterruptionOptions, onset_at: float) -> None:
        self.options = options
        self.onset_at = onset_at
        self.verdict = Verdict.UNDECIDED
        self._wordless_pause = False  # a pause's transcript held no words; voice since?

    @property
    def decided(self) -> bool:
        return self.verdict is not Verdict.UNDECIDED

    def long_enough(self, voiced_ms: int) -> bool:
        """Voiced for `min_duration_ms`: time to ask the transcript so far for words."""
        return voiced_ms >= self.options.min_duration_ms

    def on_voiced(self, voiced_ms: int) -> Verdict:
        """The interrupting speech has been voiced for `voiced_ms` so far: twice the
        minimum confirms it whatever the words (with `min_words` 0, the minimum does)."""
        limit = self.options.min_duration_ms * (2 if self.options.min_words else 1)
        if not self.decided and voiced_ms >= limit:
            self.verdict = Verdict.CONFIRMED
        return self.verdict

    def on_transcript(self, text: str, *, still_speaking: bool) -> Verdict:
        """A transcript of the interrupting speech; without real words it is a false
        interruption, unless the user is still talking (then duration decides)."""
        if self.decided:
            return self.verdict
        if len(meaningful_words(text)) >= max(self.options.min_words, 1):
            self.verdict = Verdict.CONFIRMED
        elif not still_speaking:
            self.verdict = Verdict.FALSE
        return self.verdict

    def on_wordless_pause(self, silent_ms: int) -> Verdict:
        """A pause's transcript held no words. A 64 ms pause is the gap after "Wait," as
        often as the end of a cough: noise once the silence reaches NOISE_SILENCE_MS."""
        if not self.decided:
            self._wordless_pause = True
            if silent_ms >= NOISE_SILENCE_MS:
                self.verdict = Verdict.FALSE
        return self.verdict

    def on_tick(self, now: float, *, voiced_now: bool, silent_ms: int = 0) -> Verdict:
        """Give up waiting once the timeout has passed and the user is quiet, or once a
        wordless pause has lasted; voice after that pause makes it no verdict."""
        if self.decided:
            return self.verdict
        if voiced_now:
            self._wordless_pause = False
            return self.verdict
        timeout = self.options.false_interruption_timeout_ms / 1000
        noise = self._wordless_pause and silent_ms >= NOISE_SILENCE_MS
        if noise or now - self.onset_at >= timeout:
            self.verdict = Verdict.FALSE
        return self.verdict


# Words that cut the bot off must be words Whisper is sure of, or enough of them: for a
# 0.4 s "mm-hmm" tiny.en wrote "in a month" (avg_logprob -1.13) or "NMR" (-1.12), while
# short real interruptions ("Wait.", "Stop.", "Hold on.") scored -0.73 or better; a
# person talking over the bot's echo comes out garbled and unsure, but as a phrase
# ("What are you about", "out dogs and").
BID_MIN_AVG_LOGPROB = -0.9
UNSURE_BID_MIN_WORDS = 3


def bid_text(transcript: Transcript) -> str:
    """The transcript's text if it can count as a bid for the turn, else nothing."""
    words = meaningful_words(transcript.text) if transcript.has_words else []
    sure = transcript.avg_logprob >= BID_MIN_AVG_LOGPROB
    if words and (sure or len(words) >= UNSURE_BID_MIN_WORDS):
        return transcript.text
    return ""


def unsure_words(transcript: Transcript) -> bool:
    """Real words that are not (yet) a bid: the start of a sentence heard over the echo,
    or a hum Whisper put words to. Only the end of the turn can tell which."""
    heard = meaningful_words(transcript.text) if transcript.has_words else []
    return bool(heard) and not bid_text(transcript)
