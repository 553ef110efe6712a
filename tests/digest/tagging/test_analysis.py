import pytest

from digest.models import TermAlias
from digest.ranking import Candidate, Preferences, Ranker
from digest.tagging.analysis import Analyzer, current_analyzer, default_analyzer, parse_aliases
from digest.tagging.tagger import Tagger, TopicSpec


def same(a: str, b: str) -> bool:
    analyzer = default_analyzer()
    return analyzer.terms(a) == analyzer.terms(b)


@pytest.mark.parametrize(
    ("left", "right"),
    [
        ("LLMs", "LLM"),
        ("VLMs", "vision-language models"),
        ("evaluating", "evaluation"),
        ("web browsing", "web browser"),
        ("RL", "reinforcement learning"),
        ("RLHF", "reinforcement learning from human feedback"),
        ("retrieval-augmented generation", "RAG"),
        ("Schrödinger", "schrodinger"),
        ("KV-cache", "key-value cache"),
        ("clinical", "medical"),
        ("computer-use agents", "GUI agents"),
        ("faster inference", "efficient inference"),
        ("masked diffusion models", "diffusion language models"),
    ],
)
def test_one_analyser_reads_both_forms_alike(left, right):
    assert same(left, right)


def test_acronyms_are_not_stemmed_into_words():
    analyzer = default_analyzer()
    assert analyzer.terms("AIME") != analyzer.terms("aim")
    assert analyzer.terms("GPUs") == analyzer.terms("GPU")


def test_protected_words_keep_apart_what_the_stemmer_would_fold_together():
    analyzer = default_analyzer()
    assert analyzer.terms("interpretability") != analyzer.terms("interpretation")
    assert analyzer.terms("interpretable") != analyzer.terms("interpretations")
    assert analyzer.terms("interpreting") == analyzer.terms("interpretation")


def test_hyphens_match_split_and_joined():
    analyzer = default_analyzer()
    assert "multimod" in analyzer.terms("multi-modal")
    assert analyzer.terms("multimodal") == ["multimod"]
    assert analyzer.terms("chain-of-thought") == analyzer.terms("chain of thought")


def test_selecting_data_is_data_selection_for_tagger_and_interests():
    tagger = Tagger([TopicSpec("data", "", "", "data selection")])
    assert [slug for slug, _ in tagger.tag("Selecting data that matters", "", [])] == ["data"]
    candidate = Candidate(
        id=1, title="Selecting data that matters", abstract="", keywords=(), topic_scores={},
        upvotes=1, featured_on=None,
    )  # fmt: skip
    ranked = Ranker([candidate]).rank(Preferences(topics=frozenset(), interests=("data selection",)))
    assert ranked[0].reasons == ('Interest "data selection": as a phrase in the title',)


def test_interest_for_the_expansion_finds_the_acronym_and_back():
    papers = [
        Candidate(id=1, title="Scaling RLVR", abstract="", keywords=(), topic_scores={}, upvotes=1,
                  featured_on=None),
        Candidate(id=2, title="Verifiable rewards for RL", abstract="", keywords=(), topic_scores={},
                  upvotes=1, featured_on=None),
    ]  # fmt: skip
    ranker = Ranker(papers)
    found = ranker.rank(
        Preferences(topics=frozenset(), interests=("reinforcement learning with verifiable rewards",))
    )
    assert sorted(item.paper_id for item in found) == [1, 2]


def test_aliases_parse_lines_comments_and_blanks():
    assert parse_aliases([("SSM", "state space model\n\n# old name\n  selective scan ")]) == [
        ("SSM", ("state space model", "selective scan"))
    ]
    analyzer = Analyzer(parse_aliases([("SSM", "state space model")]))
    assert analyzer.terms("state space models") == analyzer.terms("SSMs")


@pytest.mark.django_db
def test_admin_alias_edits_reach_the_analyser_after_save():
    before = current_analyzer()
    assert before.terms("SSM") != before.terms("state space model")
    alias = TermAlias.objects.create(term="SSM", expansions="state space model")
    after = current_analyzer()
    assert after is not before
    assert after.terms("SSMs") == after.terms("state space models")
    assert current_analyzer() is after  # cached until the next change
    alias.delete()
    assert current_analyzer().terms("SSM") != current_analyzer().terms("state space model")


@pytest.mark.django_db
def test_seeded_aliases_are_in_the_database():
    assert (
        TermAlias.objects.filter(
            term__in=["RL", "RLHF", "RLVR", "VLA", "MoE", "RAG", "3DGS", "KV cache"]
        ).count()
        == 8
    )
    assert current_analyzer().terms("RL") == current_analyzer().terms("reinforcement learning")
