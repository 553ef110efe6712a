import itertools
from datetime import date

from digest.ranking import (
    MAX_AFFINITY,
    Affinity,
    Candidate,
    LearnedModel,
    Preferences,
    Ranker,
    split_interests,
    trend_percentiles,
)
from digest.tagging.tagger import default_topic_specs, get_tagger

DAY = date(2026, 11, 23)
PREV = date(2026, 11, 22)


def paper(
    pid, title, topics, upvotes=10, day=DAY, abstract="", keywords=(), pinned=False, topic_evidence=None
):
    return Candidate(
        id=pid,
        title=title,
        abstract=abstract,
        keywords=tuple(keywords),
        topic_scores=topics,
        upvotes=upvotes,
        featured_on=day,
        pinned=pinned,
        topic_evidence=topic_evidence or {},
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
    assert ranked[0].reasons == ("Topic Reasoning",)


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
    assert ranked[0].relevance > 0.4  # both words of the interest, as a phrase, in the title
    assert ranked[0].reasons[0] == 'Interest "protein folding": as a phrase in the title'
    assert "Topic Science & health" in ranked[0].reasons


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


def _interest_ranking(candidates, interest, **kwargs):
    return Ranker(candidates, **kwargs).rank(Preferences(topics=frozenset(), interests=(interest,)))


def test_interest_in_the_title_outranks_the_same_words_in_the_abstract():
    candidates = [
        paper(1, "A study of caching", {}, abstract="We apply speculative decoding to caching layers."),
        paper(2, "Speculative decoding with tiny drafts", {}, abstract="Faster generation."),
        paper(3, "Protein design", {}, abstract="Proteins."),
    ]
    ranked = _interest_ranking(candidates, "speculative decoding")
    assert [item.paper_id for item in ranked] == [2, 1]
    assert ranked[0].reasons == ('Interest "speculative decoding": as a phrase in the title',)
    assert ranked[1].reasons == ('Interest "speculative decoding": as a phrase in the abstract',)
    assert ranked[0].relevance > ranked[1].relevance


def test_one_common_word_of_an_interest_does_not_pass_the_gate():
    filler = [
        paper(10 + i, f"Generation of text number {i}", {}, abstract="generation quality") for i in range(8)
    ]
    watermark = paper(
        1, "Robust watermarks", {}, abstract="Watermarking while preserving generation quality."
    )
    video = paper(2, "Video generation at scale", {}, abstract="We generate long videos.")
    ranked = _interest_ranking([*filler, watermark, video], "video generation")
    assert [item.paper_id for item in ranked] == [2]


def test_mixture_of_experts_does_not_match_data_mixing():
    candidates = [
        paper(
            1, "Data Mixing Laws", {}, abstract="How mixing proportions of data affect experts' intuitions."
        ),
        paper(2, "Sparse MoE routing", {}, abstract="A mixture-of-experts model with better routers."),
    ]
    ranked = _interest_ranking(candidates, "mixture of experts")
    assert [item.paper_id for item in ranked] == [2]


def test_reinforcement_learning_interest_meets_the_acronym():
    candidates = [paper(1, "Scaling RL for LLMs", {}, abstract="We scale RL on reasoning tasks.")]
    ranked = _interest_ranking(candidates, "reinforcement learning")
    assert [item.paper_id for item in ranked] == [1]
    assert ranked[0].reasons == ('Interest "reinforcement learning": in the title and the abstract',)


def test_reason_names_only_the_words_that_matched():
    candidates = [paper(1, "Speculative sampling", {}, abstract="Speculative drafts with a verifier.")]
    for i in range(9):
        candidates.append(paper(10 + i, f"Decoding {i}", {}, abstract="decoding"))
    found = Ranker(candidates).interest_matches("speculative decoding")
    # "speculative" is rare and "decoding" common: the rare word alone carries most of the weight.
    assert found[1].reason == 'Interest "speculative decoding": "speculative" in the title and the abstract'
    assert not any(paper_id in found for paper_id in range(10, 19))


def test_interest_that_matches_nothing_gives_no_items():
    candidates = [
        paper(i, f"Agents {i}", {"agents": 0.9}, abstract="LLM agents and tools.") for i in range(5)
    ]
    assert _interest_ranking(candidates, "spiking neural networks") == []


def test_either_side_of_and_matches():
    candidates = [
        paper(1, "Jailbreaking aligned models", {}, abstract="A jailbreak attack."),
        paper(2, "Automated red teaming", {}, abstract="Red-teaming at scale."),
        paper(3, "Image editing", {}, abstract="Edits."),
    ]
    ranked = _interest_ranking(candidates, "jailbreaks and red teaming")
    assert sorted(item.paper_id for item in ranked) == [1, 2]


def test_interest_naming_a_topic_brings_in_its_papers_below_direct_matches():
    tagger = get_tagger(default_topic_specs())
    candidates = [
        paper(1, "OpenVLA-2: a VLA model", {}, abstract="A VLA policy."),
        paper(2, "Robot manipulation from video", {"robotics": 0.8}, topic_evidence={"robotics": ("robot",)}),
    ]
    ranked = _interest_ranking(candidates, "VLA models", tagger=tagger, topic_names={"robotics": "Robotics"})
    assert [item.paper_id for item in ranked] == [1, 2]
    assert ranked[1].reasons == ('Interest "VLA models": through Topic Robotics',)


def test_a_topic_named_by_a_small_part_of_the_interest_brings_in_only_papers_with_the_rest():
    tagger = get_tagger(default_topic_specs())
    names = {"multimodal": "Multimodal", "efficiency": "Efficiency"}
    candidates = [
        paper(1, "Visual instruction tuning for VLMs", {"multimodal": 0.9}),
        paper(2, "Grounding VLMs", {"multimodal": 0.9}, abstract="Less hallucination when grounded."),
        paper(3, "Layer skipping for speculative decoding", {"efficiency": 0.9}),
        paper(4, "Token pruning for vision transformers", {"efficiency": 0.9}),
    ]
    # "VLM" is the smaller part of "VLM hallucination": a multimodal paper must also say "hallucination".
    ranked = _interest_ranking(candidates, "VLM hallucination", tagger=tagger, topic_names=names)
    assert [item.paper_id for item in ranked] == [2]
    # "faster at inference" names Efficiency and carries about half of the interest: its papers come in.
    interest = "making transformers faster at inference"
    ranked = _interest_ranking(candidates, interest, tagger=tagger, topic_names=names)
    assert {item.paper_id for item in ranked} == {3, 4}
    assert {item.reasons for item in ranked} == {(f'Interest "{interest}": through Topic Efficiency',)}


def test_papers_brought_in_through_a_topic_rank_below_every_direct_match():
    tagger = get_tagger(default_topic_specs())
    candidates = [
        paper(1, "Robot learning at scale", {"robotics": 0.95}, topic_evidence={"robotics": ("robot",)}),
        paper(2, "Scaling policies", {}, abstract="We also train a VLA on the data, among other policies."),
    ]
    ranked = _interest_ranking(candidates, "VLA models", tagger=tagger, topic_names={"robotics": "Robotics"})
    assert [item.paper_id for item in ranked] == [2, 1]
    assert ranked[1].relevance < ranked[0].relevance


def test_upvotes_break_ties_but_do_not_buy_a_place():
    candidates = [
        paper(1, "Speculative decoding", {}, upvotes=2, abstract="speculative decoding"),
        paper(2, "Speculative decoding, popular", {}, upvotes=500, abstract="We study speculative decoding."),
        paper(3, "Drafting tokens", {}, upvotes=900, abstract="Some speculative decoding here."),
        paper(4, "Other", {}, upvotes=1000),
    ]
    ranked = _interest_ranking(candidates, "speculative decoding")
    assert ranked[-1].paper_id == 3  # the most upvoted match is the least relevant
    assert all(a.relevance >= b.relevance - 0.05 for a, b in itertools.pairwise(ranked))


def test_also_trending_holds_top_upvoted_papers_missing_from_the_list():
    candidates = [paper(i, f"p{i}", {"code": 0.9} if i < 3 else {}, upvotes=i * 10) for i in range(1, 8)]
    ranker = Ranker(candidates)
    ranked = ranker.rank(Preferences(topics=frozenset({"code"})))
    trending = ranker.also_trending([item.paper_id for item in ranked])
    assert [item.paper_id for item in trending] == [7, 6, 5]
    assert all(item.trending and item.reasons[0].startswith("Also trending: ") for item in trending)
    assert ranker.also_trending([7, 6]) == ranker.also_trending([7, 6])[:1]


def test_topic_reason_names_the_phrases_that_tagged_the_paper():
    candidates = [
        paper(1, "x", {"reasoning": 0.8}, topic_evidence={"reasoning": ("chain-of-thought", "GRPO")}),
        paper(2, "y", {"reasoning": 0.7}),
    ]
    ranked = Ranker(candidates, topic_names={"reasoning": "Reasoning"}).rank(
        Preferences(topics=frozenset({"reasoning"}))
    )
    assert ranked[0].reasons == ("Topic Reasoning: chain-of-thought, GRPO",)
    assert ranked[1].reasons == ("Topic Reasoning",)


def test_learned_model_lifts_papers_like_the_liked_ones_with_a_true_reason():
    candidates = [
        paper(1, "Graph neural networks for molecules", {}, abstract="graph molecules graph"),
        paper(2, "Language agents", {}, abstract="agents tools"),
    ]
    model = LearnedModel(key=("m", 1), terms=("graph", "agent"), idf=(1.0, 1.0), coefficients=(4.0, -4.0),
                         intercept=0.0)  # fmt: skip
    prefs = Preferences(topics=frozenset(), affinity=Affinity(learned=model))
    ranked = Ranker(candidates).rank(prefs)
    assert [item.paper_id for item in ranked] == [1]
    assert ranked[0].reasons == ("Like papers you voted up: graph",)


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


def test_half_of_an_interest_never_passes_however_strong_it_is():
    candidates = [
        paper(1, "Decoding, decoding and more decoding", {}, abstract="Decoding strategies for decoding."),
        paper(2, "Speculative execution", {}, abstract="Unrelated."),
        paper(3, "Cooking", {}, abstract="Unrelated."),
    ]
    # Both words are equally rare here, so "decoding" alone is half the interest's weight.
    assert _interest_ranking(candidates, "speculative decoding") == []


def test_a_clearly_better_match_beats_a_far_more_upvoted_one():
    candidates = [
        paper(1, "a", {"code": 0.9}, upvotes=1),
        paper(2, "b", {"code": 0.7}, upvotes=1000),
        paper(3, "c", {"code": 0.9}, upvotes=50),
    ]
    ranked = Ranker(candidates).rank(Preferences(topics=frozenset({"code"})))
    assert [item.paper_id for item in ranked] == [3, 1, 2]  # upvotes order the equals, never the better
