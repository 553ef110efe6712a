"""
Measure the topic tagger on the hand-labelled papers.

    .venv/bin/python bench/tagging_quality.py            # micro P/R/F1 per split, as JSON
    .venv/bin/python bench/tagging_quality.py --errors   # also list each paper's misses and extras

Uses the shipped taxonomy (digest/tagging/taxonomy.py) and needs no database.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from digest.tagging.tagger import default_topic_specs, get_tagger  # noqa: E402

LABELLED = ROOT / "tests" / "fixtures" / "tagging" / "labelled_papers.json"


def load_papers(path: Path = LABELLED) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["papers"]


def evaluate(papers: list[dict], tagger=None) -> dict:
    """Micro precision, recall and F1 over (paper, topic) pairs, plus per-paper errors."""
    tagger = tagger or get_tagger(default_topic_specs())
    true_pos = false_pos = false_neg = 0
    errors = []
    for paper in papers:
        predicted = {
            slug for slug, _ in tagger.tag(paper["title"], paper["abstract"], paper.get("ai_keywords", []))
        }
        expected = set(paper["topics"])
        true_pos += len(predicted & expected)
        false_pos += len(predicted - expected)
        false_neg += len(expected - predicted)
        if predicted != expected:
            errors.append(
                {
                    "id": paper["id"],
                    "title": paper["title"],
                    "missed": sorted(expected - predicted),
                    "extra": sorted(predicted - expected),
                }
            )
    precision = true_pos / (true_pos + false_pos) if true_pos + false_pos else 0.0
    recall = true_pos / (true_pos + false_neg) if true_pos + false_neg else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "papers": len(papers),
        "labels": true_pos + false_neg,
        "micro_precision": round(precision, 4),
        "micro_recall": round(recall, 4),
        "micro_f1": round(f1, 4),
        "errors": errors,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--errors", action="store_true", help="list each paper's missed and extra topics")
    parser.add_argument("--split", choices=["dev", "heldout", "all"], default=None, help="only this split")
    args = parser.parse_args()

    papers = load_papers()
    splits = {
        "dev": [p for p in papers if p["split"] == "dev"],
        "heldout": [p for p in papers if p["split"] == "heldout"],
        "all": papers,
    }
    if args.split:
        splits = {args.split: splits[args.split]}
    tagger = get_tagger(default_topic_specs())
    report = {}
    for name, subset in splits.items():
        result = evaluate(subset, tagger)
        if not args.errors:
            result.pop("errors")
        report[name] = result

    # Throughput on the labelled abstracts, repeated to 1,000 papers.
    batch = (papers * (1000 // len(papers) + 1))[:1000]
    started = time.perf_counter()
    for paper in batch:
        tagger.tag(paper["title"], paper["abstract"], paper.get("ai_keywords", []))
    report["seconds_per_1000_papers"] = round(time.perf_counter() - started, 4)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
