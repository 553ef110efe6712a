from datetime import date

import pytest

from digest.models import PaperTopic, Topic
from digest.ranking import Candidate
from digest.selectors import load_papers, paper_topic_scores, topics_with_paper_counts
from tests.digest.builders import make_paper

pytestmark = pytest.mark.django_db


def test_digest_candidates_skip_hidden_papers_and_removed_topics():
    day = date(2026, 11, 21)
    shown = make_paper(1, topics={"video": 0.8}, day=day, upvotes=5, pinned=True, ai_keywords=["video"])
    make_paper(2, topics={}, day=day, hidden=True)
    make_paper(3, topics={}, day=date(2026, 11, 22))
    code = Topic.objects.get(slug="code")
    PaperTopic.objects.create(paper=shown, topic=code, score=0, set_by_curator=True)

    [candidate] = load_papers(since=day, until=day).values()
    assert isinstance(candidate, Candidate) and candidate.id == shown.pk
    assert candidate.topic_scores == {"video": 0.8}
    assert candidate.pinned and candidate.keywords == ("video",) and candidate.upvotes == 5
    assert paper_topic_scores(paper_ids=[shown.pk]) == {shown.pk: {"video": 0.8}}


def test_inactive_topics_are_left_out_and_counts_ignore_removed_tags():
    paper = make_paper(1, topics={"video": 0.6})
    video = Topic.objects.get(slug="video")
    counts = {t.slug: t.paper_count for t in topics_with_paper_counts()}
    assert counts["video"] == 1 and counts["code"] == 0
    video.is_active = False
    video.save()
    assert paper_topic_scores(paper_ids=[paper.pk]) == {}
