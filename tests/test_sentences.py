"""SentenceSplitter: speakable chunks early, never a cut inside a number or abbreviation."""

from __future__ import annotations

import random

import pytest

from server.reply.sentences import SentenceSplitter


def split_all(text: str, deltas: list[str] | None = None, **options: int) -> list[str]:
    """Punctuation rules alone (no first-phrase cut) unless `first_phrase_words` is given."""
    splitter = SentenceSplitter(**{"first_phrase_words": 0, **options})
    chunks: list[str] = []
    for delta in deltas if deltas is not None else [text]:
        chunks += splitter.push(delta)
    return chunks + splitter.flush()


def tokens(text: str) -> list[str]:
    """Split like an LLM tokenizer does: words carrying their leading space."""
    out: list[str] = []
    for i, word in enumerate(text.split(" ")):
        out.append(word if i == 0 else " " + word)
    return out


def squash(text: str) -> str:
    return "".join(text.split())


def test_sentences_are_cut_as_soon_as_the_next_word_shows() -> None:
    splitter = SentenceSplitter(first_phrase_words=0)
    assert splitter.push("Paris is the capital of France.") == []  # could still be "France.5"
    assert splitter.push(" It") == ["Paris is the capital of France."]
    assert splitter.push(" is lovely!") == []
    assert splitter.flush() == ["It is lovely!"]


def test_question_and_exclamation_marks_end_sentences() -> None:
    assert split_all("Hi! How are you? I am fine.") == ["Hi!", "How are you?", "I am fine."]


def test_decimals_and_thousands_are_not_cut() -> None:
    text = "Pi is about 3.14159 and a mile is 1,609 meters. That is all."
    assert split_all(text, tokens(text)) == [
        "Pi is about 3.14159 and a mile is 1,609 meters.",
        "That is all.",
    ]


@pytest.mark.parametrize(
    "text",
    [
        "Dr. Smith and Mr. Jones met at noon.",
        "Bring fruit, e.g. apples.",
        "She moved to the U.S. last year.",
        "J. K. Rowling wrote it.",
        "It is approx. five miles.",
    ],
)
def test_abbreviations_do_not_end_sentences(text: str) -> None:
    assert split_all(text, tokens(text)) == [text]


def test_clause_cut_once_enough_text_is_pending() -> None:
    text = (
        "The weather today is sunny and warm, with a light breeze from the west, "
        "so it is a good day for a walk; bring water."
    )
    chunks = split_all(text, tokens(text))
    assert chunks == [
        "The weather today is sunny and warm,",  # first chunk: 20 characters suffice
        # "with a light breeze from the west," alone is under 40 characters: not cut there.
        "with a light breeze from the west, so it is a good day for a walk;",
        "bring water.",
    ]


def test_short_clauses_are_not_cut() -> None:
    text = "Well, yes, it is. Later, after lunch, we go."
    chunks = split_all(text, tokens(text))
    assert chunks == ["Well, yes, it is.", "Later, after lunch, we go."]


def test_first_chunk_is_eager() -> None:
    text = "Sure, the answer is simple, it is forty-two, as everyone knows."
    chunks = split_all(text, tokens(text))
    # 27 characters is enough for the first chunk but later clauses need 40.
    assert chunks[0] == "Sure, the answer is simple,"
    assert chunks[1:] == ["it is forty-two, as everyone knows."]


def test_flush_resets_the_eager_first_chunk() -> None:
    splitter = SentenceSplitter()
    splitter.push("One short reply.")
    assert splitter.flush() == ["One short reply."]
    assert splitter.push("Of course, the next one starts early, ") == [
        "Of course, the next one starts early,"
    ]


def test_dashes_cut_clauses_but_ranges_stay_whole() -> None:
    text = "It ran from 1990–2000 in the city — then it moved to the coast."
    chunks = split_all(text, tokens(text))
    assert chunks == ["It ran from 1990–2000 in the city —", "then it moved to the coast."]


def test_closing_quotes_stay_with_their_sentence() -> None:
    text = 'He said "hello." Then he left.'
    assert split_all(text, tokens(text)) == ['He said "hello."', "Then he left."]


def test_run_on_text_is_cut_at_a_word_boundary() -> None:
    text = " ".join(["word"] * 60)
    chunks = split_all(text, tokens(text), max_chars=50)
    assert all(len(chunk) <= 50 for chunk in chunks)
    assert " ".join(chunks) == text


def test_whitespace_only_and_empty_input_yield_nothing() -> None:
    assert split_all("", ["", "  ", "\n"]) == []


def test_newlines_count_as_whitespace() -> None:
    assert split_all("First line.\nSecond line.") == ["First line.", "Second line."]


def test_chunks_reproduce_the_text_for_any_delta_boundaries() -> None:
    text = (
        "Hello there! Dr. Who said it costs $3.50, or 1,200 yen; not bad. Really? "
        "Yes — the museum, which opened in 1990–2000, is on St. James Street, "
        "e.g. near the park... It is open daily."
    )
    rng = random.Random(7)
    for _ in range(200):
        cuts = sorted(rng.sample(range(1, len(text)), rng.randint(1, 30)))
        deltas = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
        chunks = split_all(text, deltas)
        assert all(chunk and chunk == chunk.strip() for chunk in chunks)
        assert squash(" ".join(chunks)) == squash(text)
        # Where the deltas fall must not change where the text is cut.
        assert chunks == split_all(text)


@pytest.mark.parametrize(
    ("text", "first"),
    [
        ("Paris is the capital of France.", "Paris is the capital"),
        ("Jupiter is the largest planet in our solar system.", "Jupiter is the largest planet"),
        ("The sky is blue because of scattering.", "The sky is blue"),
        ("It has 8 legs.", "It has 8 legs."),  # no phrase starter: the sentence
        ("It is in the box.", "It is in the box."),  # "in" after three words: too soon
        ("Well, sure, of course.", "Well, sure, of course."),
    ],
)
def test_the_first_chunk_ends_before_a_word_that_opens_a_phrase(text: str, first: str) -> None:
    chunks = split_all(text, tokens(text), first_phrase_words=4)
    assert chunks[0] == first
    assert " ".join(chunks) == text


def test_a_phrase_starter_must_be_a_whole_word() -> None:
    splitter = SentenceSplitter()
    assert splitter.push("The answer is often") == []  # "often" could still be "of…"
    assert splitter.push(" of") == []  # "of" could still be "offer"
    assert splitter.push(" use") == ["The answer is often"]


def test_only_the_first_chunk_is_cut_at_a_phrase() -> None:
    text = "Paris is the capital of France. Its river is the Seine and it is long."
    assert split_all(text, tokens(text), first_phrase_words=4) == [
        "Paris is the capital",
        "of France.",
        "Its river is the Seine and it is long.",
    ]


@pytest.mark.parametrize(
    ("text", "first"),
    [
        ("Mount Everest is the tallest mountain in the world.", "Mount Everest"),
        ("William Shakespeare wrote Romeo and Juliet.", "William Shakespeare"),
        # never after a word that leans on the next: "is", "the" wait for "capital"
        ("Paris is the capital of France.", "Paris is the capital"),
        ("There are seven days in a week.", "There are seven"),
        ("Hello! How can I help you today?", "Hello!"),  # a sentence end comes first
        ("Dr. Smith is here today.", "Dr. Smith"),
    ],
)
def test_the_first_chunk_may_end_after_a_few_words(text: str, first: str) -> None:
    chunks = split_all(text, tokens(text), first_words=2)
    assert chunks[0] == first
    assert " ".join(chunks) == text
    assert len(chunks) <= 3  # only the first chunk is cut early


def test_a_first_chunk_of_words_waits_for_the_next_word_to_begin() -> None:
    splitter = SentenceSplitter(first_words=2)
    assert splitter.push("Mount") == []
    assert splitter.push(" Everest") == []  # "Everest" may not be whole yet
    assert splitter.push(" ") == []  # nothing after it yet: could be the end
    assert splitter.push("is") == ["Mount Everest"]
    assert splitter.push(" the tallest mountain in the world.") == []  # later: punctuation
    assert splitter.flush() == ["is the tallest mountain in the world."]


def test_first_words_off_keeps_the_phrase_rules() -> None:
    text = "Mount Everest is the tallest mountain in the world."
    assert split_all(text, tokens(text), first_words=0) == [text]
