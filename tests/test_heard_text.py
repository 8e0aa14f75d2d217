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
