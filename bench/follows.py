"""
Time ranking with arXiv's volume in the window: a day and a week of candidates, for readers
who follow topics only and for readers who also follow arXiv categories and authors.
Pure Python, no database. Prints one JSON object.

    .venv/bin/python bench/follows.py
    .venv/bin/python bench/follows.py --hf 300 --arxiv 1000 --readers 500
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from digest.ranking import Candidate, FollowIndex, Preferences, Ranker
from digest.sources.arxiv_categories import CATEGORIES

LAST = date(2031, 3, 9)
SLUGS = [f"topic-{n}" for n in range(22)]
FIRST_NAMES = [
    "Ada",
    "Alan",
    "Grace",
    "Yoshua",
    "Yann",
    "Fei-Fei",
    "José",
    "Łukasz",
    "Jürgen",
    "Mei",
    "Ravi",
    "Chen",
]
SYLLABLES = [
    "ka",
    "mo",
    "ri",
    "sen",
    "ta",
    "lu",
    "vic",
    "no",
    "zha",
    "ber",
    "gó",
    "mez",
    "ha",
    "ya",
    "shi",
    "ro",
]


def surname(rng: random.Random) -> str:
    """About 4,000 distinct surnames, as a week of arXiv has tens of thousands of authors."""
    return "".join(rng.choice(SYLLABLES) for _ in range(3)).capitalize()


def candidates(rng: random.Random, *, hf: int, arxiv: int, days: int) -> list[Candidate]:
    slugs = SLUGS
    ml = ["cs.CL", "cs.LG", "cs.CV", "cs.AI", "stat.ML", "cs.RO", "eess.AS", "cs.IR", "cs.CR", "q-bio.NC"]
    out: list[Candidate] = []
    for day_index in range(days):
        day = LAST - timedelta(days=day_index)
        for n in range(hf + arxiv):
            on_hf = n < hf
            authors = tuple(f"{rng.choice(FIRST_NAMES)} {surname(rng)}" for _ in range(rng.randint(2, 9)))
            out.append(
                Candidate(
                    id=len(out) + 1,
                    title=f"Paper {len(out)}",
                    abstract="",
                    keywords=(),
                    topic_scores={
                        slug: round(rng.uniform(0.5, 0.95), 3)
                        for slug in rng.sample(slugs, rng.randint(0, 3))
                    },
                    upvotes=int(rng.paretovariate(1.2) * 3) if on_hf else 0,
                    featured_on=day if on_hf else None,
                    categories=tuple(rng.sample(ml, rng.randint(1, 3))),
                    authors=authors,
                )
            )
    return out


def preferences(rng: random.Random, count: int, pool: list[Candidate], *, follows: bool) -> list[Preferences]:
    slugs = SLUGS
    written = [name for candidate in pool[:2000] for name in candidate.authors]
    out = []
    for _ in range(count):
        prefs = Preferences(topics=frozenset(rng.sample(slugs, rng.randint(1, 5))))
        if follows:
            prefs = Preferences(
                topics=prefs.topics,
                categories=frozenset([*rng.sample(sorted(CATEGORIES), 2), "cs.RO"]),
                authors=tuple(rng.sample(written, 5)),
            )
        out.append(prefs)
    return out


def time_ranking(pool: list[Candidate], prefs: list[Preferences], *, by_day: bool) -> dict:
    """CPU seconds (steadier than the wall clock on a shared machine)."""
    started = time.process_time()
    ranker = Ranker(pool, trend_by_day=by_day)
    built = time.process_time() - started
    started = time.process_time()
    ranker._follows = FollowIndex(ranker.candidates)
    indexed = time.process_time() - started
    started = time.process_time()
    sizes = [len(ranker.rank(p, extra=4)) for p in prefs]
    elapsed = time.process_time() - started
    return {
        "candidates": len(pool),
        "ranker_build_s": round(built, 3),
        "follow_index_build_s": round(indexed, 3),
        "rank_ms_each": round(1000 * elapsed / len(prefs), 2),
        "mean_items": round(sum(sizes) / len(sizes), 2),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--hf", type=int, default=300, help="Hugging Face papers a day")
    parser.add_argument("--arxiv", type=int, default=1000, help="arXiv-only papers a day")
    parser.add_argument("--readers", type=int, default=100, help="distinct preference sets ranked")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    week = candidates(rng, hf=args.hf, arxiv=args.arxiv, days=7)
    day = candidates(rng, hf=args.hf, arxiv=args.arxiv, days=1)
    topic_only = preferences(rng, args.readers, week, follows=False)
    following = preferences(rng, args.readers, week, follows=True)
    result = {
        "benchmark": "follows",
        "papers_per_day": {"hf": args.hf, "arxiv": args.arxiv},
        "preference_sets": args.readers,
        "day_topics_only": time_ranking(day, topic_only, by_day=True),
        "day_with_follows": time_ranking(day, following, by_day=True),
        "week_topics_only": time_ranking(week, topic_only, by_day=False),
        "week_with_follows": time_ranking(week, following, by_day=False),
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
