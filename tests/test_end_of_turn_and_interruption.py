"""The word rules behind semantic end-of-turn and false-interruption filtering."""

import pytest

from server.turns.end_of_turn import WAITS, completeness
from server.turns.interruption import (
    PendingInterruption,
    Verdict,
    meaningful_words,
)
from server.turns.options import InterruptionOptions


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("What is the capital of France?", "complete"),
        ("Turn on the lights.", "complete"),
        ("What is the capital of", "incomplete"),
        ("What is the capital of...", "incomplete"),
        ("I want to go to the, um", "incomplete"),
        ("Tell me about", "incomplete"),
        ("Paris and", "incomplete"),
        ("Hello", "unsure"),
        ("Yes.", "unsure"),
        ("", "unsure"),
        ("Tell me a joke", "complete"),
        # Whisper's "?" after half a question does not make it finished.
        ("What is the largest?", "incomplete"),
        ("How many legs?", "incomplete"),
        ("Which animal?", "incomplete"),
        ("Who wrote?", "unsure"),
        ("What is the capital?", "unsure"),
        ("Which animal says moo?", "complete"),
        ("How many legs does a spider have?", "complete"),
        ("Who wrote Romeo and Juliet?", "complete"),
        ("What's the weather like?", "complete"),
        ("Why did the chicken cross the road?", "complete"),
        ("Where is my phone?", "complete"),
        ("How are you?", "complete"),
        ("Can you help me?", "complete"),
        ("Thank you.", "complete"),
        ("What about tomorrow?", "complete"),
        ("Why?", "unsure"),
        ("Tell me", "incomplete"),
        # tiny.en often leaves a finished question bare: judged by its shape, as with "?".
        ("who wrote Romito and Juliet", "complete"),
        ("How many legs does a spider have", "complete"),
        ("what is the capital of France", "complete"),
        ("Is it going to rain", "complete"),
        ("Do you know", "unsure"),
        ("How many legs", "incomplete"),
        ("what is the capital of", "incomplete"),
        # A wh-word then an "-s" word is a verb: Whisper heard "what color is" this way.
        ("What colors the sky.", "complete"),
        ("What makes rain", "complete"),
        ("What colors?", "incomplete"),
        ("tell me about the moon", "complete"),
        ("Describe a forest", "complete"),
        ("tell me about the", "incomplete"),
    ],
)
def test_completeness(text, expected):
    assert completeness(text) == expected


def test_waits_grow_as_eagerness_falls_and_as_words_look_unfinished():
    for eagerness in ("high", "medium", "low"):
        waits = WAITS[eagerness]
        assert waits.complete < waits.unsure < waits.incomplete
    assert WAITS["high"].complete <= WAITS["medium"].complete <= WAITS["low"].complete
    assert WAITS["auto"] == WAITS["medium"]
    assert WAITS["medium"].for_text("Where is my phone?") == WAITS["medium"].complete


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("Uh-huh.", []),
        ("Mm-hmm", []),
        ("Yeah, yeah.", []),
        (" you", []),
        ("Thank you.", []),
        ("Stop.", ["stop"]),
        ("Wait, what about Berlin?", ["wait", "what", "about", "berlin"]),
        ("No", ["no"]),
        ("And", []),  # Whisper on a hum
        ("All.", []),
        ("And stop", ["and", "stop"]),
        ("M. H. M. H", []),  # tiny.en on a 0.4 s "mhm"
        ("NMR.", []),  # ... and on a 0.4 s "mm-hmm" over WebRTC
        ("MM.", []),
        ("Stop. NASA", ["stop"]),
        ("I", []),
        ("I want dogs", ["want", "dogs"]),
    ],
)
def test_backchannels_and_noise_words_are_not_meaningful(text, words):
    assert meaningful_words(text) == words


def test_pending_interruption_verdicts():
    options = InterruptionOptions(min_duration_ms=500, false_interruption_timeout_ms=1000)
    pending = PendingInterruption(options, onset_at=10.0)
    assert pending.on_voiced(400) is Verdict.UNDECIDED
    assert pending.on_transcript("", still_speaking=True) is Verdict.UNDECIDED
    assert pending.on_tick(10.9, voiced_now=False) is Verdict.UNDECIDED
    assert pending.on_tick(11.5, voiced_now=True) is Verdict.UNDECIDED  # still talking
    assert pending.long_enough(500)  # time to ask for words, not yet proof
    assert pending.on_voiced(500) is Verdict.UNDECIDED
    assert pending.on_transcript("mm-hmm", still_speaking=True) is Verdict.UNDECIDED
    assert pending.on_voiced(1000) is Verdict.CONFIRMED  # twice the minimum: taking the turn
    # Once decided, later evidence does not flip it.
    assert pending.on_transcript("", still_speaking=False) is Verdict.CONFIRMED

    quiet = PendingInterruption(options, onset_at=10.0)
    assert quiet.on_tick(11.0, voiced_now=False) is Verdict.FALSE

    no_words_needed = PendingInterruption(InterruptionOptions(min_words=0), onset_at=0.0)
    assert no_words_needed.on_voiced(1000) is Verdict.CONFIRMED

    two_words = PendingInterruption(InterruptionOptions(min_words=2), onset_at=0.0)
    assert two_words.on_transcript("stop", still_speaking=True) is Verdict.UNDECIDED
    assert two_words.on_transcript("stop please", still_speaking=False) is Verdict.CONFIRMED


def test_interruption_options_refuse_negative_values():
    with pytest.raises(ValueError, match="min_duration_ms"):
        InterruptionOptions(min_duration_ms=-1)


def test_tts_lead_in_is_trimmed_to_10_ms_before_the_voice():
    import numpy as np

    from server.reply.speech import trim_leading_silence

    rate = 22050
    pcm = np.concatenate([np.full(882, 50, np.int16), np.full(441, 3000, np.int16)])  # 40 ms quiet
    trimmed = trim_leading_silence(pcm, rate)
    assert len(trimmed) == 441 + 220  # the voice plus 10 ms before it
    assert trimmed[-1] == 3000
    assert len(trim_leading_silence(np.zeros(500, np.int16), rate)) == 0
