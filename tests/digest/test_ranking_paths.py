"""`Ranker.rank` takes shortcuts (topic-only readers from per-topic lists,
reasons written only for the chosen papers, diversity from per-match queues).
These tests hold it to the plain definition: match every paper on its own,
order by score, keep the best four times the list length and pick greedily
with the diversity decay. Ties are made on purpose (equal tags, equal upvotes,
several topics per paper), since that is where a shortcut can differ."""

import random
from collections import Counter
from datetime import date

import pytest

from digest.ranking import (
    DIVERSITY_DECAY,
    Affinity,
    Candidate,
    LearnedModel,
    Preferences,
    RankedItem,
    Ranker,
)

DAY = date(2026, 11, 23)
TOPICS = ["agents", "code", "robotics", "vision", "speech", "reasoning"]
WORDS = ["graph", "robot", "agent", "speech", "diffusion", "proof", "retrieval", "memory"]
TAGS = [0.2, 0.35, 0.5, 0.5, 0.8, 0.9, 0.9, 1.0, 1.3]
MODEL = LearnedModel(
    key=("m", 1), terms=("graph", "robot"), idf=(1.0, 1.0), coefficients=(3.0, -1.0), intercept=-0.5
)


def reference_rank(
    ranker: Ranker, prefs: Preferences, exclude: frozenset[int], extra: int
) -> list[RankedItem]:
    limit = prefs.max_items + extra
    pinned: list[RankedItem] = []
    scored: list[tuple[RankedItem, str]] = []
    for candidate in ranker.candidates:
        if candidate.id in exclude:
            continue
        found = ranker.match(candidate, prefs)
        if found is None:
            continue
        trend = ranker.trend.get(candidate.id, 0.0)
        item = RankedItem(
            paper_id=candidate.id,
            score=round(found.relevance + ranker.trend_weight * trend, 6),
            relevance=round(found.relevance, 6),
            trend=round(trend, 6),
            reasons=found.reasons,
            pinned=candidate.pinned,
        )
        if candidate.pinned:
            pinned.append(item)
        else:
            scored.append((item, found.primary))
    chosen = sorted(pinned, key=lambda item: (-item.score, item.paper_id))[:limit]
    remaining = sorted(scored, key=lambda pair: (-pair[0].score, pair[0].paper_id))[: 4 * limit]
    used: Counter[str] = Counter()
    picked: list[RankedItem] = []
    while remaining and len(picked) < limit - len(chosen):
        values = [item.score * DIVERSITY_DECAY ** used[primary] for item, primary in remaining]
        best = max(values)
        item, primary = remaining.pop(values.index(best))  # the first of equal values
        used[primary] += 1
        picked.append(item)
    return chosen + picked


def random_candidates(rng: random.Random, count: int) -> list[Candidate]:
    candidates = []
    for pid in range(1, count + 1):
        topics = {slug: rng.choice(TAGS) for slug in rng.sample(TOPICS, rng.randint(0, 4))}
        title = " ".join(rng.sample(WORDS, rng.randint(1, 3)))
        candidates.append(
            Candidate(
                id=pid,
                title=title,
                abstract=" ".join(rng.choices(WORDS, k=6)),
                keywords=(),
                topic_scores=topics,
                upvotes=rng.choice([0, 5, 5, 20, 100]),
                featured_on=DAY,
                pinned=rng.random() < 0.05,
            )
        )
    return candidates


def random_preferences(rng: random.Random, kind: str) -> Preferences:
    topics = frozenset(rng.sample(TOPICS, rng.randint(1, 4)))
    interests: tuple[str, ...] = ()
    affinity = Affinity()
    if kind in ("interests", "everything"):
        interests = tuple(rng.sample(WORDS, rng.randint(1, 2)))
    if kind in ("votes", "everything"):
        votes = [(rng.choice([1, -1]), {rng.choice(TOPICS): 1.0}) for _ in range(rng.randint(1, 12))]
        affinity = Affinity.from_votes(votes)
    if kind == "learned":
        affinity = Affinity(learned=MODEL)
    return Preferences(topics=topics, interests=interests, max_items=rng.randint(1, 10), affinity=affinity)


@pytest.mark.parametrize("kind", ["topics", "interests", "votes", "learned", "everything"])
def test_rank_equals_matching_every_paper_then_picking_greedily(kind):
    rng = random.Random(f"ranking-{kind}")
    compared = 0
    for _ in range(12):
        ranker = Ranker(random_candidates(rng, rng.choice([15, 60, 150])))
        for _ in range(25):
            prefs = random_preferences(rng, kind)
            exclude = frozenset(rng.sample(range(1, 40), rng.randint(0, 5)))
            extra = rng.choice([0, 0, 4])
            expected = reference_rank(ranker, prefs, exclude, extra)
            assert ranker.rank(prefs, exclude=exclude, extra=extra) == expected, (prefs, exclude, extra)
            compared += bool(expected)
    # Most preference sets match something, so the lists compared are not all empty.
    assert compared > 200
