from datetime import date

from digest.ranking import (
    MAX_AFFINITY,
    Affinity,
    Candidate,
    PaperText,
    Preferences,
    Ranker,
    interest_score,
    parse_interest,
    split_interests,
    stem,
    trend_percentiles,
)

DAY = date(2026, 11, 23)
PREV = date(2026, 11, 22)


def paper(pid, title, topics, upvotes=10, day=DAY, abstract="", keywords=(), pinned=False):
    return Candidate(
        paper_id=pid,
        title=title,
        abstract=abstract,
        keywords=tuple(keywords),
        topic_scores=topics,
        upvotes=upvotes,
        featured_on=day,
        pinned=pinned,
    )


def test_trend_is_upvote_percentile_within_each_day():
    candidates = [
        paper(1, "a", {}, upvotes=5),
        paper(2, "b", {}, upvotes=50),
        paper(3, "c", {}, upvotes=20),
        paper(4, "d", {}, upvotes=3, day=PREV),
        paper(5, "e", {}, upvotes=1, day=PREV),
        paper(6, "f", {}, upvotes=0, day=None),
    ]
    trend = trend_percentiles(candidates)
    assert trend == {1: 0.0, 3: 0.5, 2: 1.0, 5: 0.0, 4: 1.0, 6: 0.0}


def test_trend_ties_share_the_average_rank():
    trend = trend_percentiles([paper(1, "a", {}, 7), paper(2, "b", {}, 7), paper(3, "c", {}, 9)])
    assert trend[1] == trend[2] == 0.25
    assert trend[3] == 1.0


def test_papers_outside_chosen_topics_are_gated_out():
    ranker = Ranker([paper(1, "Robot arms", {"robotics": 0.9}), paper(2, "Math proofs", {"reasoning": 0.8})])
    ranked = ranker.rank(Preferences(topics=frozenset({"reasoning"})))
    assert [item.paper_id for item in ranked] == [2]
    assert ranked[0].reasons == ("Topic: Reasoning",)


def test_weak_tag_below_gate_is_dropped():
    ranker = Ranker([paper(1, "x", {"reasoning": 0.1})], gate=0.3)
    assert ranker.rank(Preferences(topics=frozenset({"reasoning"}))) == []


def test_interests_and_topics_merge_by_maximum_and_name_the_reason():
    candidates = [
        paper(1, "Protein folding with diffusion models", {"science-health": 0.4}, upvotes=1),
        paper(2, "A survey of graph networks", {"science-health": 0.35}, upvotes=2),
    ]
    ranker = Ranker(candidates, topic_names={"science-health": "Science & health"})
    prefs = Preferences(topics=frozenset({"science-health"}), interests=("protein folding",))
    ranked = ranker.rank(prefs)
    assert ranked[0].paper_id == 1
    assert ranked[0].relevance == 1.0  # every word of the interest is in the title
    assert ranked[0].reasons[0] == "Interest: “protein folding”"
    assert "Topic: Science & health" in ranked[0].reasons


def test_trending_breaks_ties_between_equally_relevant_papers():
    candidates = [paper(1, "a", {"code": 0.8}, upvotes=3), paper(2, "b", {"code": 0.8}, upvotes=90)]
    ranked = Ranker(candidates).rank(Preferences(topics=frozenset({"code"})))
    assert [item.paper_id for item in ranked] == [2, 1]


def test_pinned_matching_papers_go_first_and_unmatched_pins_do_not():
    candidates = [
        paper(1, "a", {"code": 0.95}, upvotes=99),
        paper(2, "b", {"code": 0.5}, upvotes=0, pinned=True),
        paper(3, "c", {"video": 0.9}, upvotes=50, pinned=True),
    ]
    ranked = Ranker(candidates).rank(Preferences(topics=frozenset({"code"})))
    assert [item.paper_id for item in ranked] == [2, 1]
    assert ranked[0].pinned


def test_max_items_limits_the_list():
    candidates = [paper(i, f"p{i}", {"agents": 0.9}, upvotes=i) for i in range(1, 30)]
    ranked = Ranker(candidates).rank(Preferences(topics=frozenset({"agents"}), max_items=5))
    assert len(ranked) == 5
    assert [item.paper_id for item in ranked] == [29, 28, 27, 26, 25]


def test_one_topic_cannot_fill_the_email_when_others_match():
    agents = [paper(i, f"agent {i}", {"agents": 0.9}, upvotes=100 + i) for i in range(1, 11)]
    code = [paper(100 + i, f"code {i}", {"code": 0.8}, upvotes=i) for i in range(1, 4)]
    ranked = Ranker(agents + code).rank(Preferences(topics=frozenset({"agents", "code"}), max_items=8))
    topics = ["code" if item.paper_id > 100 else "agents" for item in ranked]
    assert topics.count("code") >= 2
    assert topics.count("agents") <= 6


def test_exclude_and_extra_let_callers_skip_already_sent_papers():
    candidates = [paper(i, f"p{i}", {"agents": 0.9}, upvotes=i) for i in range(1, 6)]
    ranker = Ranker(candidates)
    prefs = Preferences(topics=frozenset({"agents"}), max_items=2)
    assert [i.paper_id for i in ranker.rank(prefs, exclude=frozenset({5}))] == [4, 3]
    assert len(ranker.rank(prefs, extra=2)) == 4


def test_interest_score_rewards_title_over_abstract_and_needs_most_words():
    text = PaperText.of(
        paper(1, "Sparse attention for long documents", {}, abstract="We study retrieval of passages.")
    )
    assert interest_score(parse_interest("sparse attention"), text) == 1.0
    assert interest_score(parse_interest("passage retrieval"), text) == 0.6
    assert interest_score(parse_interest("retrieval of passages"), text) == 0.8  # the phrase, in the abstract
    assert interest_score(parse_interest("protein design"), text) == 0.0
    assert interest_score(parse_interest("attention for proteins"), text) == 0.5


def test_stem_matches_plurals_and_verb_forms():
    assert stem("passages") == stem("passage") == "passage"
    assert stem("routers") == "router"
    assert stem("queries") == stem("query")
    assert stem("training") == stem("train")
    assert stem("boxes") == "box"
    assert stem("loss") == "loss"


def test_interest_matching_handles_plurals_and_hyphens():
    text = PaperText.of(paper(1, "Mixture-of-Experts routers", {}))
    assert interest_score(parse_interest("mixture of expert router"), text) == 1.0
    assert interest_score(parse_interest("expert routing"), text) == 0.5


def test_split_interests_accepts_lines_commas_and_semicolons():
    assert split_interests("protein folding, RLHF\n\nspeech; RLHF") == ("protein folding", "RLHF", "speech")
    assert split_interests("") == ()


def test_votes_raise_and_lower_topic_weight_within_bounds():
    affinity = Affinity.from_votes([(1, {"agents": 1.0})] * 20 + [(-1, {"video": 0.5})])
    weights = affinity.as_dict()
    assert 0.29 < weights["agents"] <= MAX_AFFINITY
    assert -MAX_AFFINITY <= weights["video"] < 0


def test_downvoted_topic_ranks_lower_than_before():
    candidates = [paper(1, "v", {"video": 0.8}, upvotes=10), paper(2, "c", {"code": 0.7}, upvotes=10)]
    ranker = Ranker(candidates)
    neutral = Preferences(topics=frozenset({"video", "code"}))
    disliked = Preferences(
        topics=frozenset({"video", "code"}), affinity=Affinity.from_votes([(-1, {"video": 1.0})] * 5)
    )
    assert [i.paper_id for i in ranker.rank(neutral)] == [1, 2]
    assert [i.paper_id for i in ranker.rank(disliked)] == [2, 1]


def test_upvoted_unchosen_topic_brings_in_papers_with_a_reason():
    candidates = [paper(1, "robot", {"robotics": 0.9})]
    ranker = Ranker(candidates, topic_names={"robotics": "Robotics"})
    prefs = Preferences(
        topics=frozenset({"code"}), affinity=Affinity.from_votes([(1, {"robotics": 1.0})] * 10)
    )
    ranked = ranker.rank(prefs)
    assert [i.paper_id for i in ranked] == [1]
    assert ranked[0].reasons == ("Like papers you upvoted: Robotics",)


def test_preferences_key_groups_identical_preferences():
    a = Preferences(topics=frozenset({"code", "agents"}), interests=("rag",))
    b = Preferences(topics=frozenset({"agents", "code"}), interests=("rag",))
    c = Preferences(topics=frozenset({"agents"}), interests=("rag",))
    assert a.key() == b.key() != c.key()
