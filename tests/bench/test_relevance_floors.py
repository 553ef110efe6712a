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

# The targets: precision and recall at least 0.90 over all the papers, and no half far below.
TAGGING_TARGET = 0.90
TAGGING_FLOOR = 0.88
# nDCG@8 and P@5 at least this much above BM25 in the same run, on each half and on all.
BM25_MARGIN = 0.05
NDCG_ALL_FLOOR = 0.80


@pytest.fixture(scope="module")
def dev():
    path = data_dir()
    if not (path / "papers.json").is_file():
        service_missing(f"the labelled relevance set is not at {path}")
    return load_dev_set(path)


def _split(dev, split):
    return [paper for paper in dev.papers if split == "all" or paper.split == split]


@pytest.mark.parametrize("split", ["tune", "heldout", "all"])
def test_tagging_precision_and_recall_floors(dev, split):
    report = tagging_report(_split(dev, split))
    floor = TAGGING_TARGET if split == "all" else TAGGING_FLOOR
    assert report["micro_precision"] >= floor
    assert report["micro_recall"] >= floor


@pytest.mark.parametrize("split", ["tune", "heldout", "all"])
def test_interests_beat_bm25_and_no_match_interests_stay_empty(dev, split):
    papers = _split(dev, split)
    ours = interests_report(papers, dev.grades, project_ranker(papers, dev.papers))
    bm25 = interests_report(papers, dev.grades, bm25_baseline(papers))
    assert ours["ndcg@8"] >= bm25["ndcg@8"] + BM25_MARGIN
    assert ours["p@5"] >= bm25["p@5"] + BM25_MARGIN
    if split == "all":
        assert ours["ndcg@8"] >= NDCG_ALL_FLOOR
    empty, total = (int(n) for n in ours["no_match_empty"].split("/"))
    assert total == 4 and empty >= 3
