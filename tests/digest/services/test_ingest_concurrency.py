"""Ingests of one day at the same time, against the real PostgreSQL: each waits
for the one before it, so none fails and every paper is stored once."""

import threading

import pytest
from django.db import connection

from digest.models import Paper, PaperTopic
from digest.services import papers_ingest
from tests.digest.factories import record

WRITERS = 8
PAPERS = 40


def day_records(upvotes: int):
    return [
        record(
            f"2611.{n:05d}",
            title=f"Speculative decoding with draft trees, part {n}",
            abstract="We accelerate inference with speculative decoding and a draft model. " * 3,
            upvotes=upvotes + n,
        )
        for n in range(PAPERS)
    ]


@pytest.mark.services
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_many_ingests_of_one_day_at_once_all_succeed_and_store_each_paper_once(postgres_required):
    # Half the day is already stored, and a curator has hidden, pinned and noted one paper.
    papers_ingest(records=day_records(1)[: PAPERS // 2])
    curated = Paper.objects.filter(arxiv_id="2611.00003")
    curated.update(hidden=True, pinned=True, note="duplicate of 2611.00004")

    start = threading.Barrier(WRITERS)
    errors: list[BaseException] = []

    def ingest(upvotes: int) -> None:
        try:
            start.wait(timeout=30)
            papers_ingest(records=day_records(upvotes))
        except BaseException as exc:  # every failure is the finding
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=ingest, args=(100 * (i + 1),)) for i in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert errors == []
    assert Paper.objects.count() == PAPERS
    assert Paper.objects.values("arxiv_id").distinct().count() == PAPERS
    curated = Paper.objects.get(arxiv_id="2611.00003")
    assert (curated.hidden, curated.pinned, curated.note) == (True, True, "duplicate of 2611.00004")
    tagged = PaperTopic.objects.filter(paper__arxiv_id="2611.00010").count()
    assert tagged >= 1
    assert PaperTopic.objects.count() == PaperTopic.objects.values("paper_id", "topic_id").distinct().count()
    # The last writer wins the counts, whichever it was.
    assert Paper.objects.get(arxiv_id="2611.00000").upvotes in {100 * (i + 1) for i in range(WRITERS)}
