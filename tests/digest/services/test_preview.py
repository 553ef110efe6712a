"""The preview tells what a reader got for a sent edition, and why nothing goes when nothing would."""

from datetime import UTC, datetime, timedelta

import pytest
from django.core import mail
from django.core.management import call_command

from digest.models import Delivery, Paper
from digest.services.preview import Outcome, digest_preview
from subscribers.models import Subscriber
from tests.digest.builders import EDITION, YESTERDAY, make_paper, make_reader
from tests.digest.sending_support import run_night

pytestmark = pytest.mark.django_db


@pytest.fixture
def papers():
    return [
        make_paper(1, topics={"reasoning": 0.9}, title="Proofs with search", upvotes=20),
        make_paper(2, topics={"reasoning": 0.7}, title="Chains of thought", upvotes=5),
        make_paper(3, topics={"video": 0.9}, title="Video worlds", upvotes=3),
    ]


def test_a_sent_edition_shows_the_papers_and_subject_the_reader_got(papers):
    ada = make_reader("ada@example.org", ["reasoning"])
    run_night()
    delivery = Delivery.objects.get(subscriber=ada)
    assert delivery.status == Delivery.Status.SENT
    ada.refresh_from_db()
    assert ada.last_digest_at.date() >= EDITION  # the window now starts after this edition

    preview = digest_preview(subscriber=ada, edition=EDITION)

    assert preview.outcome == Outcome.SENT
    assert preview.digest is not None
    assert preview.digest.subject == delivery.subject
    assert list(preview.digest.paper_ids) == delivery.paper_ids
    assert [item.paper_id for item in preview.ranked] == delivery.paper_ids
    assert "Proofs with search" in preview.digest.text and "Chains of thought" in preview.digest.text
    assert preview.digest.headers["Message-ID"].startswith(f"<digest.{EDITION:%Y%m%d}.{delivery.pk}@")
    assert "Sent to ada@example.org" in preview.summary


def test_a_sent_edition_keeps_the_recorded_order_and_notes_papers_hidden_since(papers):
    ada = make_reader("ada@example.org", ["reasoning"])
    run_night()
    delivery = Delivery.objects.get(subscriber=ada)
    # The record, not a fresh ranking, decides: reverse it and hide one paper.
    delivery.paper_ids = list(reversed(delivery.paper_ids))
    delivery.save()
    Paper.objects.filter(pk=delivery.paper_ids[0]).update(hidden=True)

    preview = digest_preview(subscriber=ada, edition=EDITION)

    assert [item.paper_id for item in preview.ranked] == delivery.paper_ids[1:]
    assert any("hidden or deleted" in note for note in preview.notes)
    assert preview.titles[delivery.paper_ids[0]]  # still named in the page


def sent_at(reader: Subscriber, moment: datetime) -> None:
    """Pretend the night's digest went out at this moment."""
    Delivery.objects.filter(subscriber=reader).update(sent_at=moment)
    Subscriber.objects.filter(pk=reader.pk).update(last_digest_at=moment)
    reader.refresh_from_db()


def test_the_next_edition_after_a_sent_one_ranks_like_the_night(papers):
    ada = make_reader("ada@example.org", ["reasoning"])
    run_night()
    sent_at(ada, datetime(2026, 11, 24, 6, 0, tzinfo=UTC))
    preview = digest_preview(subscriber=ada, edition=EDITION + timedelta(days=1))
    assert preview.outcome == Outcome.NOTHING
    assert "No papers were featured in their window" in preview.reasons[0]


def test_an_edition_older_than_the_last_send_says_the_window_is_past(papers):
    ada = make_reader("ada@example.org", ["reasoning"])
    run_night()
    sent_at(ada, datetime(2026, 12, 4, 6, 0, tzinfo=UTC))  # a late run of the 24th
    preview = digest_preview(subscriber=ada, edition=EDITION + timedelta(days=1))
    assert preview.outcome == Outcome.NOTHING
    assert preview.reasons[0].startswith("Their last digest went out on 2026-12-04, after the last day")


def test_an_unsent_edition_shows_what_would_go(papers):
    ada = make_reader("ada@example.org", ["reasoning"])
    preview = digest_preview(subscriber=ada, edition=EDITION)
    assert preview.outcome == Outcome.WOULD_SEND
    assert preview.reasons == []
    assert [item.paper_id for item in preview.ranked] == [papers[0].pk, papers[1].pk]
    assert Delivery.objects.count() == 0 and mail.outbox == []


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (Subscriber.Status.PENDING, "not confirmed"),
        (Subscriber.Status.PAUSED, "paused"),
        (Subscriber.Status.UNSUBSCRIBED, "unsubscribed"),
        (Subscriber.Status.SUPPRESSED, "suppressed (hard bounce)"),
    ],
)
def test_a_reader_who_gets_nothing_because_of_their_status_is_told_so(papers, status, expected):
    reader = make_reader("ada@example.org", ["reasoning"], status=status, suppression_reason="hard bounce")
    preview = digest_preview(subscriber=reader, edition=EDITION)
    assert expected in " ".join(preview.reasons)
    assert preview.digest is not None  # what they would get, shown with the reason beside it
    assert "if a digest were due" in " ".join(preview.notes)


def test_a_weekly_reader_on_another_day_is_not_due(papers):
    other_day = (EDITION.weekday() + 1) % 7
    reader = make_reader("ada@example.org", ["reasoning"], frequency="weekly", weekday=other_day)
    preview = digest_preview(subscriber=reader, edition=EDITION)
    assert "They read weekly" in preview.reasons[0]


def test_no_topics_or_interests(papers):
    reader = make_reader("ada@example.org", [])
    preview = digest_preview(subscriber=reader, edition=EDITION)
    assert preview.outcome == Outcome.NOTHING
    assert preview.reasons == ["They have no topics or interests, so no paper can match."]


def test_no_papers_in_the_window_counts_hidden_ones(db):
    make_paper(1, topics={"reasoning": 0.9}, hidden=True)
    make_paper(2, topics={"reasoning": 0.9}, day=YESTERDAY - timedelta(days=3))
    reader = make_reader("ada@example.org", ["reasoning"])
    preview = digest_preview(subscriber=reader, edition=EDITION)
    assert preview.reasons == [
        f"No papers were featured in their window, {YESTERDAY} (1 hidden by a curator)."
    ]


def test_all_papers_below_the_gate(db, settings):
    settings.DIGEST_RELEVANCE_GATE = 0.5
    make_paper(1, topics={"reasoning": 0.4})
    make_paper(2, topics={"video": 0.9})
    reader = make_reader("ada@example.org", ["reasoning"])
    preview = digest_preview(subscriber=reader, edition=EDITION)
    assert preview.outcome == Outcome.NOTHING
    assert preview.reasons == [
        f"All 2 papers in their window ({YESTERDAY}) are below the relevance gate of 0.50 for their "
        "topics and interests (best: 0.40)."
    ]


def test_all_passing_papers_already_sent(db):
    paper = make_paper(1, topics={"reasoning": 0.9})
    reader = make_reader("ada@example.org", ["reasoning"])
    Delivery.objects.create(
        subscriber=reader, edition=EDITION - timedelta(days=3), status="sent", paper_ids=[paper.pk]
    )
    preview = digest_preview(subscriber=reader, edition=EDITION)
    assert preview.outcome == Outcome.NOTHING
    assert "were already sent to them" in preview.reasons[0]


def test_an_empty_delivery_says_why(db, settings):
    settings.DIGEST_RELEVANCE_GATE = 0.5
    make_paper(1, topics={"reasoning": 0.4})
    reader = make_reader("ada@example.org", ["reasoning"])
    run_night()
    assert Delivery.objects.get().status == Delivery.Status.EMPTY
    preview = digest_preview(subscriber=reader, edition=EDITION)
    assert preview.outcome == Outcome.NOTHING
    assert "below the relevance gate" in preview.reasons[0]


def test_a_failed_delivery_names_its_error(papers):
    reader = make_reader("ada@example.org", ["reasoning"])
    Delivery.objects.create(subscriber=reader, edition=EDITION, status="failed", attempts=5, error="ESP 503")
    preview = digest_preview(subscriber=reader, edition=EDITION)
    assert preview.reasons == ["The delivery failed after 5 attempt(s): ESP 503."]
    assert preview.digest is not None


def test_preview_digest_command_prints_the_sent_copy_and_says_so(papers, capsys):
    make_reader("ada@example.org", ["reasoning"])
    run_night()
    delivery = Delivery.objects.get()
    call_command("preview_digest", "ada@example.org", date=EDITION.isoformat())
    out = capsys.readouterr()
    assert out.out.startswith(f"Subject: {delivery.subject}")
    assert "Sent to ada@example.org" in out.err
    assert "relevance gate" not in out.err


def test_preview_digest_command_names_the_cause_of_nothing(db, capsys):
    make_reader("ada@example.org", [])
    call_command("preview_digest", "ada@example.org", date=EDITION.isoformat(), format="eml")
    out = capsys.readouterr()
    assert out.out == ""
    assert "Nothing goes to ada@example.org for 2026-11-24: They have no topics or interests" in out.err
