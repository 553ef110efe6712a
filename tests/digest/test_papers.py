"""The one-line TL;DR: Hugging Face's summary, else the abstract's first sentence, cut on a word."""

import pytest

from digest.papers import TLDR_MAX_CHARS, cut_on_word, first_sentence, tldr


def test_tldr_prefers_the_hugging_face_summary():
    assert tldr(ai_summary="We make it fast.", abstract="Long abstract. More.") == "We make it fast."


def test_tldr_falls_back_to_the_abstracts_first_sentence():
    abstract = "Large models are slow. We propose a cache. It is 2x faster."
    assert tldr(ai_summary="  ", abstract=abstract) == "Large models are slow."


@pytest.mark.parametrize(
    ("abstract", "sentence"),
    [
        ("We use tricks, e.g. caching, to win. Then more.", "We use tricks, e.g. caching, to win."),
        ("Smith et al. show it. We go on.", "Smith et al. show it."),
        ("Accuracy rises to 91.5 percent. We also X.", "Accuracy rises to 91.5 percent."),
        ("No sentence end at all", "No sentence end at all"),
        ("Does it scale? Yes.", "Does it scale?"),
        ("  Spaces\n and   breaks.  Next.", "Spaces and breaks."),
        ("", ""),
    ],
)
def test_first_sentence_skips_abbreviations_and_decimals(abstract, sentence):
    assert first_sentence(abstract) == sentence


def test_long_text_is_cut_on_a_word_boundary_with_an_ellipsis():
    text = "We introduce " + "wonderfully " * 30 + "end."
    cut = cut_on_word(text)
    assert len(cut) <= TLDR_MAX_CHARS
    assert cut.endswith("wonderfully…")
    assert cut[:-1] in text  # only whole words, nothing made up


def test_cut_never_splits_a_word_and_drops_dangling_punctuation():
    assert cut_on_word("alpha beta gamma", 12) == "alpha beta…"
    assert cut_on_word("alpha beta, gamma delta", 13) == "alpha beta…"
    assert cut_on_word("alpha beta gamma", 16) == "alpha beta gamma"
    # A cut that falls right after a word keeps that word.
    assert cut_on_word("alpha beta gamma", 11) == "alpha beta…"


def test_a_single_over_long_word_is_cut_rather_than_lost():
    cut = cut_on_word("x" * 300, 20)
    assert cut == "x" * 19 + "…"
