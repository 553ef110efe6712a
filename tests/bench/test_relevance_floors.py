"""Floors for tagging and interest ranking on the real labelled papers (bench/relevance.py).

The labelled set lives beside the repository (``../shared/relevance-dev``, or
``RELEVANCE_DEV_DIR``) and is never copied into it. Without it this test skips,
unless REQUIRE_SERVICES=1 (CI), where a missing set is a failure.
"""

import pytest

from bench.relevance import (
    bm25_baseline,
    data_dir,
    interests_report,
    load_dev_set,
    project_ranker,
    tagging_report,
)
from tests.conftest import service_missing

TAGGING_FLOOR = 0.85
NDCG_MARGIN = 0.03


@pytest.fixture(scope="module")
def dev():
    path = data_dir()
    if not (path / "papers.json").is_file():
        service_missing(f"the labelled relevance set is not at {path}")
    return load_dev_set(path)


@pytest.mark.parametrize("split", ["tune", "heldout"])
def test_tagging_precision_and_recall_floors(dev, split):
    report = tagging_report([paper for paper in dev.papers if paper.split == split])
    assert report["micro_precision"] >= TAGGING_FLOOR
    assert report["micro_recall"] >= TAGGING_FLOOR


@pytest.mark.parametrize("split", ["tune", "heldout"])
def test_interests_beat_bm25_and_no_match_interests_stay_empty(dev, split):
    papers = [paper for paper in dev.papers if paper.split == split]
    ours = interests_report(papers, dev.grades, project_ranker(papers, dev.papers))
    bm25 = interests_report(papers, dev.grades, bm25_baseline(papers))
    assert ours["ndcg@8"] >= bm25["ndcg@8"] + NDCG_MARGIN
    assert ours["p@5"] >= bm25["p@5"] + NDCG_MARGIN
    empty, total = (int(n) for n in ours["no_match_empty"].split("/"))
    assert total == 4 and empty >= 3
