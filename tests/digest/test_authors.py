"""Author names as readers type them against names as papers list them."""

import pytest

from digest.authors import AuthorIndex, fold, parse_name


def test_fold_removes_accents_and_case():
    assert fold("José Núñez-García") == "jose nunez-garcia"
    assert fold("Łukasz KAISER") == "lukasz kaiser"
    assert fold("Jürgen Schmidhuber") == fold("Jurgen Schmidhuber")


def test_parse_reads_surname_first_bibliography_style():
    assert parse_name("Bengio, Yoshua") == parse_name("Yoshua Bengio")
    assert parse_name("Y. Bengio").given == ("y",)
    assert parse_name("  ") is None


@pytest.mark.parametrize(
    ("followed", "written"),
    [
        ("Yoshua Bengio", "yoshua bengio"),
        ("Jurgen Schmidhuber", "Jürgen Schmidhuber"),
        ("Y. Bengio", "Yoshua Bengio"),
        ("Yoshua Bengio", "Y. Bengio"),
        ("Bengio, Yoshua", "Yoshua Bengio"),
        ("J.-P. Dupont", "Jean-Pierre Dupont"),
        ("Geoffrey E. Hinton", "Geoffrey Hinton"),
    ],
)
def test_names_match_across_accents_case_order_and_initials(followed, written):
    index = AuthorIndex([(1, [written, "Someone Else"])])
    assert index.papers_by(followed) == {1: written}


@pytest.mark.parametrize(
    ("followed", "written"),
    [
        ("Yoshua Bengio", "Samy Bengio"),
        ("Y. Bengio", "Samy Bengio"),
        ("Yoshua Bengio", "Yoshua Bengiotti"),
        ("Ada Lovelace", "Ada"),
    ],
)
def test_different_people_do_not_match(followed, written):
    assert AuthorIndex([(1, [written])]).papers_by(followed) == {}


def test_an_initial_stands_for_a_full_name_only_when_unambiguous():
    index = AuthorIndex([(1, ["Yoshua Bengio"]), (2, ["Yann Bengio"]), (3, ["Y. Bengio"])])
    # Two Y. Bengios in the window: the initial matches neither full name.
    assert index.papers_by("Y. Bengio") == {3: "Y. Bengio"}
    # ...and a full name does not claim the bare initial either.
    assert index.papers_by("Yoshua Bengio") == {1: "Yoshua Bengio"}
    assert index.papers_by("Yann Bengio") == {2: "Yann Bengio"}
