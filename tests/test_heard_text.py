"""Heard-only transcripts: the text of a reply cut at a playout position."""

from server.reply.heard_text import HeardText


def build(clauses: list[tuple[str, float]]) -> HeardText:
    heard = HeardText()
    for text, _ in clauses:
        heard.add_text(text)
    for text, ms in clauses:
        span = heard.locate(text.strip())
        heard.add_audio(span, ms / 2)  # in two TTS chunks, like Piper's per-sentence output
        heard.add_audio(span, ms / 2)
    return heard


REPLY = [("Paris is the capital of France, ", 2000.0), ("and it is lovely in spring.", 2000.0)]
FULL = "Paris is the capital of France, and it is lovely in spring."


def test_nothing_played_means_nothing_heard():
    assert build(REPLY).heard(0) == ""


def test_everything_played_is_the_whole_reply():
    heard = build(REPLY)
    assert heard.audio_ms == 4000
    assert heard.heard(4000) == FULL
    assert heard.heard(10_000) == FULL


def test_cut_inside_a_clause_is_a_word_boundary_prefix():
    heard = build(REPLY)
    for ms in range(20, 4000, 137):
        text = heard.heard(ms)
        assert FULL.startswith(text)
        assert text == "" or FULL[len(text) : len(text) + 1] in ("", " ", ",")
    assert heard.heard(2000) == "Paris is the capital of France,"
    middle = heard.heard(1000)
    assert 0 < len(middle) < len("Paris is the capital of France,")


def test_text_never_synthesized_is_never_heard():
    heard = HeardText()
    heard.add_text("One sentence. And another one the TTS never reached.")
    heard.add_audio(heard.locate("One sentence."), 1000)
    assert heard.heard(5000) == "One sentence."


# ---- word timings -------------------------------------------------------------------------------

DRAGON = "The dragon is a kind and gentle creature."
# Where each word ends (ms into the clause's audio), as a TTS with timings reports them.
DRAGON_ENDS = [120.0, 615.0, 743.0, 917.0, 1173.0, 1289.0, 1614.0, 2113.0]


def timed_dragon(lead_ms: float = 0.0) -> HeardText:
    heard = HeardText()
    heard.add_text(DRAGON)
    heard.add_audio(heard.locate(DRAGON), 2320.0, list(enumerate(DRAGON_ENDS)))
    return heard


def test_a_word_is_heard_only_once_its_end_has_played():
    heard = timed_dragon()
    words = DRAGON.split()
    for n, end in enumerate(DRAGON_ENDS):
        assert heard.heard(end - 1) == " ".join(words[:n]), f"cut 1 ms before {words[n]!r}"
        assert heard.heard(end + 1) == " ".join(words[: n + 1]), f"1 ms after {words[n]!r}"
    assert heard.heard(2320.0) == DRAGON


def test_word_ends_are_counted_from_their_chunk_of_the_clause():
    # Piper gives a two-sentence clause as two chunks; the second's ends are from its start.
    text = "Hello there. How are you?"
    heard = HeardText()
    heard.add_text(text)
    span = heard.locate(text)
    heard.add_audio(span, 800.0, [(0, 300.0), (1, 700.0)])
    heard.add_audio(span, 900.0, [(2, 200.0), (3, 400.0), (4, 750.0)])
    assert heard.heard(1150.0) == "Hello there. How"
    assert heard.heard(1250.0) == "Hello there. How are"
    assert heard.heard(1540.0) == "Hello there. How are"
    assert heard.heard(1560.0) == "Hello there. How are you?"


def test_without_timings_a_begun_word_is_not_heard():
    # Proportional to characters: "The dragon" ends at 10/41 of 4100 ms = 1000 ms.
    heard = HeardText()
    heard.add_text(DRAGON)
    heard.add_audio(heard.locate(DRAGON), 4100.0)
    assert heard.heard(999.0) == "The"
    assert heard.heard(1001.0) == "The dragon"


async def test_the_speaker_moves_word_ends_with_the_trimmed_lead_in():
    """A fake TTS with timings: 100 ms of silence, then a word ending 300 ms in."""
    import asyncio

    import numpy as np

    from server.engines.word_timing import TimedAudio, WordEnd
    from server.reply.speech import ClauseSpeaker
    from server.turns.timings import TurnTimings

    class FakeTimedTTS:
        name = "fake-timed"
        sample_rate = 1000  # a sample a millisecond, to read the numbers

        async def load(self) -> None:
            pass

        async def synthesize(self, text, voice=None, speed=1.0):
            raise AssertionError("the speaker asks for the timed audio")
            yield

        async def synthesize_words(self, text, voice=None, speed=1.0):
            pcm = np.zeros(500, dtype=np.int16)
            pcm[100:300] = 5000
            pcm[350:480] = 5000
            yield TimedAudio(pcm, (WordEnd(0, 300), WordEnd(1, 480)))

    heard = HeardText()
    heard.add_text("Hello world.")
    played: list[int] = []
    speaker = ClauseSpeaker(
        FakeTimedTTS(), voice="x", speed=1.0, heard=heard, timings=TurnTimings(),
        play=lambda pcm, rate: played.append(len(pcm)),
    )  # fmt: skip
    clauses: asyncio.Queue[str | None] = asyncio.Queue()
    clauses.put_nowait("Hello world.")
    clauses.put_nowait(None)
    await speaker.speak(clauses)
    assert played == [410]  # 90 ms of the lead-in dropped, 10 ms kept
    assert heard.heard(209.0) == ""
    assert heard.heard(211.0) == "Hello"
    assert heard.heard(391.0) == "Hello world."


def test_a_clause_begun_without_timings_stays_proportional():
    heard = HeardText()
    heard.add_text(DRAGON)
    span = heard.locate(DRAGON)
    heard.add_audio(span, 2050.0)  # an engine's first chunk came with no word ends
    heard.add_audio(span, 2050.0, [(7, 2000.0)])
    assert heard.heard(999.0) == "The"  # the estimate over the whole clause, as before
    assert heard.heard(1001.0) == "The dragon"
