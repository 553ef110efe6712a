"""
Measure topic tagging and interest ranking on the hand-labelled real papers.

    .venv/bin/python bench/relevance.py                       # the whole report, as JSON
    .venv/bin/python bench/relevance.py --errors              # also list tagging misses and extras
    .venv/bin/python bench/relevance.py --data PATH           # another copy of the labelled set

The labelled set (170 Hugging Face Daily Papers items from nine days, with topic
labels and 24 graded free-text interests) is read at run time from
``../shared/relevance-dev`` beside the repository, or from ``--data`` or the
``RELEVANCE_DEV_DIR`` environment variable. It is never copied into the project.

The days are split once and for all: tuning looked only at the "tune" days, and
the "held-out" days are reported beside them. Interests are ranked over all the
papers of a split, as if they were one digest window. The project's ranker is
compared with two baselines over title + abstract, in the same run: BM25
(k1=1.2, b=0.75, computed from scikit-learn's CountVectorizer) and TF-IDF
cosine (scikit-learn's TfidfVectorizer). Needs no database.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEFAULT_DATA = ROOT.parent / "shared" / "relevance-dev"
ENV_VAR = "RELEVANCE_DEV_DIR"
# Every other featured day is held out; tuning only ever looked at the "tune" days.
TUNE_DAYS = frozenset({"2025-04-22", "2025-07-09", "2025-10-24", "2026-01-22", "2026-04-20"})
CUTOFF = 8


def data_dir(explicit: str | None = None) -> Path:
    return Path(explicit or os.environ.get(ENV_VAR) or DEFAULT_DATA)


@dataclass(frozen=True)
class LabelledPaper:
    index: int
    arxiv_id: str
    day: str
    title: str
    abstract: str
    ai_summary: str
    keywords: tuple[str, ...]
    upvotes: int
    required: frozenset[str]
    acceptable: frozenset[str]

    @property
    def split(self) -> str:
        return "tune" if self.day in TUNE_DAYS else "heldout"


@dataclass(frozen=True)
class DevSet:
    papers: list[LabelledPaper]
    # interest -> arxiv id -> grade (1 or 2); no-match interests map to {}
    grades: dict[str, dict[str, int]]


def _labels(field: str) -> frozenset[str]:
    return frozenset(slug for slug in field.split(",") if slug)


def load_dev_set(path: Path) -> DevSet:
    """Read the labelled set through the same parser the nightly run uses for the API."""
    from digest.sources import hf_api

    if not (path / "papers.json").is_file():
        raise FileNotFoundError(f"no labelled set at {path} (set {ENV_VAR} or pass --data)")
    records = hf_api.parse((path / "papers.json").read_text(encoding="utf-8"))
    topics: dict[str, tuple[frozenset[str], frozenset[str]]] = {}
    for line in (path / "topics.tsv").read_text(encoding="utf-8").splitlines():
        if not line or line.startswith("#"):
            continue
        arxiv_id, required, acceptable = ([*line.split("\t"), "", ""])[:3]
        topics[arxiv_id] = (_labels(required), _labels(acceptable))
    papers = []
    for index, record in enumerate(records):
        required, acceptable = topics.get(record.arxiv_id, (frozenset(), frozenset()))
        papers.append(
            LabelledPaper(
                index=index,
                arxiv_id=record.arxiv_id,
                day=(record.featured_on or date.min).isoformat(),
                title=record.title,
                abstract=record.abstract,
                ai_summary=record.ai_summary,
                keywords=tuple(record.ai_keywords),
                upvotes=record.upvotes,
                required=required,
                acceptable=acceptable,
            )
        )
    grades: dict[str, dict[str, int]] = {}
    for line in (path / "interests.tsv").read_text(encoding="utf-8").splitlines():
        if not line or line.startswith("#"):
            continue
        interest, arxiv_id, grade = line.split("\t")
        grades.setdefault(interest, {})
        if arxiv_id != "-" and int(grade) > 0:
            grades[interest][arxiv_id] = int(grade)
    return DevSet(papers=papers, grades=grades)


# --- tagging -----------------------------------------------------------------


def tagging_report(papers: Sequence[LabelledPaper], *, errors: bool = False) -> dict:
    """Micro precision (a tag is right when required or acceptable) and recall (of required tags)."""
    from digest.tagging.tagger import default_topic_specs, get_tagger

    tagger = get_tagger(default_topic_specs())
    per_topic: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])  # tags, right, required, found
    mistakes = []
    for paper in papers:
        predicted = {slug for slug, _ in tagger.tag(paper.title, paper.abstract, paper.keywords)}
        allowed = paper.required | paper.acceptable
        for slug in predicted:
            per_topic[slug][0] += 1
            per_topic[slug][1] += slug in allowed
        for slug in paper.required:
            per_topic[slug][2] += 1
            per_topic[slug][3] += slug in predicted
        missed, extra = paper.required - predicted, predicted - allowed
        if errors and (missed or extra):
            mistakes.append({"id": paper.arxiv_id, "title": paper.title[:90], "missed": sorted(missed),
                             "extra": sorted(extra)})  # fmt: skip
    tags, right, required, found = (sum(row[i] for row in per_topic.values()) for i in range(4))
    report: dict = {
        "papers": len(papers),
        "micro_precision": _ratio(right, tags),
        "micro_recall": _ratio(found, required),
        "per_topic": {
            slug: {
                "precision": _ratio(row[1], row[0]),
                "recall": _ratio(row[3], row[2]),
                "tags": row[0],
                "required": row[2],
            }
            for slug, row in sorted(per_topic.items())
        },
    }
    if errors:
        report["errors"] = mistakes
    return report


def _ratio(numerator: float, denominator: float) -> float:
    return round(numerator / denominator, 3) if denominator else 1.0


# --- interests ---------------------------------------------------------------

# A ranker takes the split's papers and one interest and returns the papers it
# would send, best first (an empty list means no email).
RankFn = Callable[[str], list[str]]


def _dcg(gains: Sequence[float]) -> float:
    return sum((2**gain - 1) / math.log2(position + 2) for position, gain in enumerate(gains))


def interest_metrics(ranked: list[str], grades: dict[str, int]) -> dict[str, float]:
    gains = [grades.get(arxiv_id, 0) for arxiv_id in ranked[:CUTOFF]]
    ideal = _dcg(sorted(grades.values(), reverse=True)[:CUTOFF])
    relevant = sum(1 for grade in grades.values() if grade > 0)
    return {
        "ndcg@8": _dcg(gains) / ideal if ideal else 0.0,
        "p@5": sum(1 for gain in gains[:5] if gain > 0) / 5,
        "r@8": sum(1 for gain in gains if gain > 0) / min(relevant, CUTOFF) if relevant else 0.0,
    }


def interests_report(
    papers: Sequence[LabelledPaper], grades: dict[str, dict[str, int]], rank: RankFn
) -> dict:
    ids = {paper.arxiv_id for paper in papers}
    rows: dict[str, list[float]] = defaultdict(list)
    per_interest = {}
    empty_no_match = no_match = 0
    for interest, graded in grades.items():
        in_split = {arxiv_id: grade for arxiv_id, grade in graded.items() if arxiv_id in ids}
        ranked = rank(interest)
        if not graded:  # one of the interests that match no paper at all
            no_match += 1
            empty_no_match += not ranked
            per_interest[interest] = {"sent": len(ranked[:CUTOFF])}
            continue
        if not in_split:  # nothing relevant among this split's days: no ranking to judge
            continue
        metrics = interest_metrics(ranked, in_split)
        for name, value in metrics.items():
            rows[name].append(value)
        per_interest[interest] = {name: round(value, 3) for name, value in metrics.items()}
    summary: dict = {name: round(float(np.mean(values)), 3) for name, values in rows.items()}
    summary["interests"] = len(rows["ndcg@8"])
    summary["no_match_empty"] = f"{empty_no_match}/{no_match}"
    summary["per_interest"] = per_interest
    return summary


def bm25_baseline(papers: Sequence[LabelledPaper], k1: float = 1.2, b: float = 0.75) -> RankFn:
    """Okapi BM25 over title + abstract, term counts from scikit-learn's CountVectorizer."""
    from sklearn.feature_extraction.text import CountVectorizer

    vectorizer = CountVectorizer(stop_words="english")
    counts = vectorizer.fit_transform([f"{p.title} {p.abstract}" for p in papers]).tocsc().astype(float)
    lengths = np.asarray(counts.sum(axis=1)).ravel()
    df = np.diff(counts.indptr)
    idf = np.log(1 + (len(papers) - df + 0.5) / (df + 0.5))
    norm = k1 * (1 - b + b * lengths / lengths.mean())
    vocabulary = vectorizer.vocabulary_
    analyse = vectorizer.build_analyzer()

    def rank(interest: str) -> list[str]:
        scores = np.zeros(len(papers))
        for term in set(analyse(interest)):
            column = vocabulary.get(term)
            if column is None:
                continue
            start, end = counts.indptr[column], counts.indptr[column + 1]
            rows, tf = counts.indices[start:end], counts.data[start:end]
            scores[rows] += idf[column] * tf * (k1 + 1) / (tf + norm[rows])
        return _top(papers, scores)

    return rank


def tfidf_baseline(papers: Sequence[LabelledPaper]) -> RankFn:
    """Cosine similarity of scikit-learn TF-IDF vectors over title + abstract."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(stop_words="english", sublinear_tf=True)
    matrix = vectorizer.fit_transform([f"{p.title} {p.abstract}" for p in papers])

    def rank(interest: str) -> list[str]:
        scores = (matrix @ vectorizer.transform([interest]).T).toarray().ravel()
        return _top(papers, scores)

    return rank


def _top(papers: Sequence[LabelledPaper], scores: np.ndarray) -> list[str]:
    order = sorted(range(len(papers)), key=lambda i: (-scores[i], i))
    return [papers[i].arxiv_id for i in order if scores[i] > 0]


def project_ranker(
    papers: Sequence[LabelledPaper], archive: Sequence[LabelledPaper] | None = None, limit: int = CUTOFF
) -> RankFn:
    """The digest's own ranker, for a reader with this one interest and no topics.

    Corpus statistics come from `archive` (every labelled paper, as the stored
    archive would hold them); only the split's papers are candidates."""
    from digest.ranking import Preferences

    ranker, by_id = build_ranker(papers, archive)

    def rank(interest: str) -> list[str]:
        items = ranker.rank(Preferences(topics=frozenset(), interests=(interest,), max_items=limit))
        return [by_id[item.paper_id] for item in items if not item.trending]

    return rank


def build_ranker(papers: Sequence[LabelledPaper], archive: Sequence[LabelledPaper] | None = None):
    """A Ranker over these papers, with corpus statistics and tags computed as ingest would."""
    from digest.ranking import Ranker
    from digest.tagging.analysis import CorpusStats
    from digest.tagging.tagger import default_topic_specs, get_tagger

    tagger = get_tagger(default_topic_specs())
    candidates = [_candidate(paper, tagger) for paper in papers]
    stats = CorpusStats.from_documents(_candidate(paper, tagger).fields() for paper in (archive or papers))
    ranker = Ranker(candidates, stats=stats, tagger=tagger)
    return ranker, {paper.index: paper.arxiv_id for paper in papers}


def _candidate(paper: LabelledPaper, tagger):
    from digest.ranking import Candidate

    tags = tagger.tag_with_evidence(paper.title, paper.abstract, paper.keywords)
    return Candidate(
        id=paper.index,
        title=paper.title,
        abstract=paper.abstract,
        keywords=paper.keywords,
        topic_scores={slug: score for slug, score, _ in tags},
        topic_evidence={slug: phrases for slug, _, phrases in tags},
        upvotes=paper.upvotes,
        featured_on=date.fromisoformat(paper.day),
        ai_summary=paper.ai_summary,
    )


def ranking_cost(papers: Sequence[LabelledPaper], interests: Sequence[str], target: int = 300) -> dict:
    """Milliseconds to rank one distinct preference set against `target` candidates."""
    from digest.ranking import Preferences

    pool = list(papers)
    while len(pool) < target:
        pool += papers
    ranker, _ = build_ranker(pool[:target])
    sets = [
        Preferences(topics=frozenset({"agents", "reasoning"}), interests=(interest,), max_items=8)
        for interest in interests
    ] + [Preferences(topics=frozenset({slug}), max_items=8) for slug in ("video", "efficiency", "robotics")]
    for prefs in sets:  # warm the per-run caches the nightly run also keeps
        ranker.rank(prefs)
    rounds = 20
    started, cpu_started = time.perf_counter(), time.process_time()
    for _ in range(rounds):
        for prefs in sets:
            ranker.rank(prefs)
            ranker.reset_caches()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    calls = rounds * len(sets)
    return {
        "candidates": target,
        "preference_sets": len(sets),
        "ms_per_preference_set": round(elapsed * 1000 / calls, 3),
        # CPU time of this process: less sensitive to other work on a shared machine.
        "cpu_ms_per_preference_set": round(cpu * 1000 / calls, 3),
    }


def report(dev: DevSet, *, errors: bool = False) -> dict:
    out: dict = {"tagging": {}, "interests": {}}
    splits = {
        "tune": [p for p in dev.papers if p.split == "tune"],
        "heldout": [p for p in dev.papers if p.split == "heldout"],
        "all": dev.papers,
    }
    for name, subset in splits.items():
        out["tagging"][name] = tagging_report(subset, errors=errors and name == "all")
        if name == "all":
            out["tagging"][name].pop("per_topic") if errors else None
    for name, subset in splits.items():
        out["interests"][name] = {
            "project": interests_report(subset, dev.grades, project_ranker(subset, dev.papers)),
            "bm25": interests_report(subset, dev.grades, bm25_baseline(subset)),
            "tfidf": interests_report(subset, dev.grades, tfidf_baseline(subset)),
        }
    out["ranking_cost"] = ranking_cost(dev.papers, list(dev.grades))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data", default=None, help=f"labelled set folder (default: ${ENV_VAR} or {DEFAULT_DATA})"
    )
    parser.add_argument("--errors", action="store_true", help="list tagging misses and extras")
    parser.add_argument("--per-interest", action="store_true", help="keep each interest's numbers")
    args = parser.parse_args()
    result = report(load_dev_set(data_dir(args.data)), errors=args.errors)
    if not args.per_interest:
        for split in result["interests"].values():
            for system in split.values():
                system.pop("per_interest")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
