from datetime import date

import pytest

from digest.models import PaperTopic, Topic
from digest.selectors import candidates_for_day, paper_topic_scores, papers_for_day, topics_with_paper_counts
from tests.digest.factories import PaperFactory

pytestmark = pytest.mark.django_db


def test_candidates_for_day_skip_hidden_papers_and_removed_topics():
    day = date(2026, 11, 21)
    shown = PaperFactory(featured_on=day, upvotes=5, pinned=True, ai_keywords=["video"])
    PaperFactory(featured_on=day, hidden=True)
    PaperFactory(featured_on=date(2026, 11, 22))
    video, code = Topic.objects.get(slug="video"), Topic.objects.get(slug="code")
    PaperTopic.objects.create(paper=shown, topic=video, score=0.8)
    PaperTopic.objects.create(paper=shown, topic=code, score=0, set_by_curator=True)

    [candidate] = candidates_for_day(day=day)
    assert candidate.paper_id == shown.pk
    assert candidate.topic_scores == {"video": 0.8}
    assert candidate.pinned and candidate.keywords == ("video",) and candidate.upvotes == 5
    assert papers_for_day(day=day, include_hidden=True).count() == 2
    assert paper_topic_scores(paper_ids=[shown.pk]) == {shown.pk: {"video": 0.8}}


def test_inactive_topics_are_left_out_and_counts_ignore_removed_tags():
    paper = PaperFactory()
    video = Topic.objects.get(slug="video")
    PaperTopic.objects.create(paper=paper, topic=video, score=0.6)
    counts = {t.slug: t.paper_count for t in topics_with_paper_counts()}
    assert counts["video"] == 1 and counts["code"] == 0
    video.is_active = False
    video.save()
    assert paper_topic_scores(paper_ids=[paper.pk]) == {}
