from datetime import date

import pytest

from digest.models import PaperTopic, Topic
from digest.ranking import Candidate
from digest.selectors import load_papers, paper_topic_scores, topics_with_paper_counts
from tests.digest.builders import make_paper, make_reader

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


def _claimed_readers(count: int):
    """`count` readers with topics, a vote and an earlier digest, claimed in one chunk."""
    from digest.models import Delivery, DigestRun, Feedback
    from digest.selectors import readers_for_deliveries

    topic = Topic.objects.order_by("slug").first()
    earlier = make_paper(900 + count, topics={topic.slug: 0.8})
    edition = date(2026, 11, 24)
    past = DigestRun.objects.create(edition=date(2026, 11, 23))
    run = DigestRun.objects.create(edition=edition)
    rows = []
    for n in range(count):
        reader = make_reader(f"reader{count}-{n}@example.org", [topic.slug], interests="diffusion models")
        Feedback.objects.create(subscriber=reader, paper=earlier, vote=1)
        Delivery.objects.create(
            run=past,
            subscriber=reader,
            edition=past.edition,
            status=Delivery.Status.SENT,
            paper_ids=[earlier.pk],
        )
        delivery = Delivery.objects.create(
            run=run, subscriber=reader, edition=edition, claim_token=f"t{count}"
        )
        rows.append((delivery.pk, reader.pk, 0))
    claimed = Delivery.objects.filter(run=run, claim_token=f"t{count}").values("subscriber_id")
    return edition, rows, claimed, readers_for_deliveries


@pytest.mark.django_db
def test_a_chunk_reads_its_readers_through_a_subquery_of_the_same_size_however_many_rows():
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    sql_length = {}
    for count in (3, 30):
        edition, rows, claimed, readers_for_deliveries = _claimed_readers(count)
        by_list, _ = readers_for_deliveries(edition=edition, rows=rows)
        with CaptureQueriesContext(connection) as queries:
            by_subquery, _ = readers_for_deliveries(edition=edition, rows=rows, subscriber_query=claimed)
        assert by_subquery == by_list
        assert all(reader.already_sent and reader.preferences.topics for reader in by_subquery.values())
        sql_length[count] = sum(len(query["sql"]) for query in queries.captured_queries)
    # Ten times the rows, and the SQL grows by the digits of larger ids only, not by a list of ids.
    assert sql_length[30] < sql_length[3] + 200
