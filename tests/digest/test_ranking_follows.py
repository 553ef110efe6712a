"""Followed arXiv categories and authors in ranking."""

from datetime import date

from digest.ranking import Candidate, Preferences, Ranker, trend_percentiles

DAY = date(2026, 11, 23)


def paper(pid, *, topics=None, categories=(), authors=(), upvotes=10, day=DAY, pinned=False, title=""):
    return Candidate(
        id=pid,
        title=title or f"Paper {pid}",
        abstract="",
        keywords=(),
        topic_scores=topics or {},
        upvotes=upvotes,
        featured_on=day,
        pinned=pinned,
        categories=tuple(categories),
        authors=tuple(authors),
    )


# --- Ranking ---------------------------------------------------------------------------


def test_papers_in_a_followed_category_become_candidates_and_are_ranked():
    ranker = Ranker(
        [
            paper(1, categories=["cs.RO", "cs.LG"], upvotes=5),
            paper(2, categories=["cs.LG", "cs.RO"], upvotes=50),  # cross-listed in cs.RO
            paper(3, categories=["cs.CV"], upvotes=90),
            paper(4, topics={"reasoning": 0.9}, upvotes=1),
        ]
    )
    ranked = ranker.rank(Preferences(topics=frozenset({"reasoning"}), categories=frozenset({"cs.RO"})))
    # Ranking still applies, relevance first: the primary category beats the more upvoted cross-list.
    assert [item.paper_id for item in ranked] == [4, 1, 2]
    by_id = {item.paper_id: item for item in ranked}
    assert by_id[1].reasons == ("Category: Robotics (cs.RO)",)
    assert by_id[1].relevance == 0.5 and by_id[2].relevance == 0.4  # primary beats cross-list
    assert not any(item.followed for item in ranked)


def test_category_papers_still_face_the_gate_and_the_size():
    candidates = [paper(i, categories=["cs.RO"]) for i in range(1, 6)]
    prefs = Preferences(topics=frozenset(), categories=frozenset({"cs.RO"}), max_items=3)
    assert len(Ranker(candidates).rank(prefs)) == 3
    assert Ranker(candidates, gate=0.6).rank(prefs) == []


def test_a_paper_in_a_topic_and_a_category_names_both():
    ranker = Ranker([paper(1, topics={"robotics": 0.9}, categories=["cs.RO"])])
    (item,) = ranker.rank(Preferences(topics=frozenset({"robotics"}), categories=frozenset({"cs.RO"})))
    assert item.reasons == ("Topic Robotics", "Category: Robotics (cs.RO)")
    assert item.relevance == 0.9


def test_a_followed_author_always_makes_the_list_first_with_the_reason():
    candidates = [paper(i, topics={"reasoning": 0.9}, upvotes=100 + i) for i in range(1, 9)]
    candidates.append(paper(20, topics={}, authors=["Grace Hopper", "Jürgen Schmidhuber"], upvotes=0))
    prefs = Preferences(topics=frozenset({"reasoning"}), authors=("Jurgen Schmidhuber",), max_items=3)
    ranked = Ranker(candidates).rank(prefs)
    assert ranked[0].paper_id == 20
    assert ranked[0].reasons == ("Author: Jürgen Schmidhuber",)
    assert ranked[0].followed and ranked[0].relevance == 1.0
    assert len(ranked) == 3


def test_papers_by_followed_authors_are_kept_past_the_digest_size():
    candidates = [paper(i, authors=["Ada Lovelace"]) for i in range(1, 5)]
    candidates.append(paper(9, topics={"reasoning": 0.9}))
    prefs = Preferences(topics=frozenset({"reasoning"}), authors=("A. Lovelace",), max_items=2)
    ranked = Ranker(candidates).rank(prefs)
    assert [item.paper_id for item in ranked] == [1, 2, 3, 4]
    assert all(item.reasons == ("Author: Ada Lovelace",) for item in ranked)


def test_an_author_match_leads_a_papers_other_reasons():
    ranker = Ranker([paper(1, topics={"reasoning": 0.9}, authors=["Alan Turing"])])
    (item,) = ranker.rank(
        Preferences(topics=frozenset({"reasoning"}), interests=("proofs",), authors=("Alan Turing",))
    )
    assert item.reasons[0] == "Author: Alan Turing" and "Topic Reasoning" in item.reasons


def test_following_nothing_ranks_as_before():
    candidates = [paper(1, topics={"reasoning": 0.9}, authors=["Alan Turing"], categories=["cs.RO"])]
    ranked = Ranker(candidates).rank(Preferences(topics=frozenset({"video"})))
    assert ranked == []


def test_preferences_with_different_follows_do_not_share_a_ranking():
    base = Preferences(topics=frozenset({"reasoning"}))
    assert base.key() != Preferences(topics=frozenset({"reasoning"}), authors=("Ada Lovelace",)).key()
    assert base.key() != Preferences(topics=frozenset({"reasoning"}), categories=frozenset({"cs.RO"})).key()


def test_a_weeks_trend_compares_upvotes_across_the_whole_week():
    monday, friday = date(2026, 11, 16), date(2026, 11, 20)
    candidates = [
        paper(1, upvotes=300, day=monday),
        paper(2, upvotes=100, day=monday),
        paper(3, upvotes=5, day=friday),  # a quiet day's top paper
        paper(4, upvotes=1, day=friday),
    ]
    assert trend_percentiles(candidates)[3] == 1.0
    week = trend_percentiles(candidates, by_day=False)
    assert week[1] == 1.0 and week[3] < week[2] < week[1]
