"""Which papers a digest covers: a day, the week's best, or a catch-up after a pause;
and what kind of digest it says it is."""

from datetime import UTC, datetime, time, timedelta

import pytest
from django.core import mail
from django.test import TestCase

from digest.compose import CATCHUP_MAX_DAYS, digest_window
from digest.models import DigestRun
from digest.tasks import nightly_run
from subscribers.models import Subscriber
from subscribers.services import subscriber_pause, subscriber_resume
from tests.digest.builders import EDITION, YESTERDAY, make_paper, make_reader

pytestmark = pytest.mark.django_db


def at(day, hour=6):
    return datetime.combine(day, time(hour), tzinfo=UTC)


def days_before(n):
    return EDITION - timedelta(days=n)


# --- The window ----------------------------------------------------------------------


def test_daily_window_is_yesterday_and_weekly_the_last_seven_days():
    assert digest_window(edition=EDITION, frequency="daily", last_digest_at=at(days_before(1))) == (
        type(digest_window(edition=EDITION, frequency="daily", last_digest_at=None))(YESTERDAY, "daily")
    )
    weekly = digest_window(edition=EDITION, frequency="weekly", last_digest_at=at(days_before(7)))
    assert (weekly.start, weekly.kind) == (days_before(7), "weekly")


# Moments are (days before the edition, hour UTC); the window starts that many days before it.
@pytest.mark.parametrize(
    ("frequency", "last_digest", "paused", "resumed", "start", "kind"),
    [
        ("daily", (6, 6), (6, 9), (1, 20), 6, "catchup"),
        ("weekly", (21, 6), (17, 6), (5, 6), CATCHUP_MAX_DAYS, "catchup"),  # then the weekday 5 days later
        ("daily", (30, 6), (30, 6), (2, 6), 1, "daily"),
        ("daily", (1, 6), (8, 6), (2, 6), 1, "daily"),  # the catch-up went out yesterday
        ("weekly", (7, 6), (5, 6), (3, 6), 7, "weekly"),
    ],
    ids=[
        "back_from_a_pause_the_window_opens_on_the_day_the_pause_began",
        "a_catch_up_reaches_back_at_most_fourteen_days",
        "a_pause_longer_than_fourteen_days_gets_no_backlog",
        "only_one_catch_up_after_a_pause",
        "a_pause_inside_a_weekly_window_needs_no_catch_up",
    ],
)
def test_the_window_around_a_pause(frequency, last_digest, paused, resumed, start, kind):
    def moment(days_and_hour):
        days, hour = days_and_hour
        return at(days_before(days), hour)

    window = digest_window(
        edition=EDITION,
        frequency=frequency,
        last_digest_at=moment(last_digest),
        paused_at=moment(paused),
        resumed_at=moment(resumed),
    )
    assert (window.start, window.kind) == (days_before(start), kind)


# --- Whole nights ----------------------------------------------------------------------


def night(edition=EDITION) -> DigestRun:
    with TestCase.captureOnCommitCallbacks(execute=True):
        run_id = nightly_run(edition.isoformat(), fetch=False)
    return DigestRun.objects.get(id=run_id)


def digest_for(email):
    (message,) = [m for m in mail.outbox if m.to == [email]]
    return message, message.alternatives[0][0]


def numbered_papers(body: str) -> list[str]:
    """The papers' numbered headings, after the list of titles at the top."""
    papers = body.split("-" * 70, 1)[1]
    return [line for line in papers.splitlines() if line[:2] in ("1.", "2.", "3.")]


@pytest.fixture
def week_of_papers():
    """One reasoning paper a day for a week; upvotes peak mid-week."""
    upvotes = {7: 10, 6: 400, 5: 20, 4: 300, 3: 5, 2: 200, 1: 15}
    return {
        n: make_paper(n, topics={"reasoning": 0.8}, day=days_before(n), upvotes=votes, title=f"Day minus {n}")
        for n, votes in upvotes.items()
    }


def test_a_weekly_digest_carries_the_weeks_best_by_upvotes(week_of_papers):
    make_reader(
        "weekly@example.org", ["reasoning"], frequency="weekly", weekday=EDITION.weekday(), digest_size=3
    )
    make_reader("daily@example.org", ["reasoning"], digest_size=3)
    night()

    weekly, weekly_html = digest_for("weekly@example.org")
    assert numbered_papers(weekly.body) == [
        "1. Day minus 6",
        "2. Day minus 4",
        "3. Day minus 2",
    ]
    # The week of the last day it covers (Monday 23 November), in the heading and the subject.
    assert "Week of 23 November 2026" in weekly.body and "Week of 23 November 2026" in weekly_html
    assert weekly.subject.startswith("3 papers for the week of 23 Nov: ")
    daily, _ = digest_for("daily@example.org")
    assert "1. Day minus 1" in daily.body and "Day minus 2" not in daily.body
    assert "Tuesday 24 November 2026" in daily.body


def test_a_daily_digest_skips_arxiv_papers_from_earlier_days():
    make_paper(
        1, topics={"reasoning": 0.9}, featured_on=None, published_at=at(days_before(3)), title="Old arXiv"
    )
    make_paper(
        2, topics={"reasoning": 0.9}, featured_on=None, published_at=at(YESTERDAY, 18), title="New arXiv"
    )
    make_reader("daily@example.org", ["reasoning"])
    night()
    message, _ = digest_for("daily@example.org")
    assert "New arXiv" in message.body and "Old arXiv" not in message.body


def test_back_from_a_pause_a_reader_gets_one_catch_up_of_what_they_missed():
    older = {10: 50, 9: 5, 4: 80, 2: 1, 1: 30}  # featured n days before the edition: upvotes
    for n, votes in older.items():
        make_paper(n, topics={"reasoning": 0.8}, day=days_before(n), upvotes=votes, title=f"Missed {n}")
    make_paper(11, topics={"reasoning": 0.8}, day=days_before(12), upvotes=999, title="Before the pause")
    reader = make_reader("back@example.org", ["reasoning"], digest_size=3, last_digest_at=at(days_before(11)))
    subscriber_pause(subscriber=reader)
    subscriber_resume(subscriber=reader)
    # The pause began eleven days ago and ended last night.
    Subscriber.objects.filter(pk=reader.pk).update(
        paused_at=at(days_before(11), 12), resumed_at=at(YESTERDAY, 20)
    )

    night()
    message, html = digest_for("back@example.org")
    numbered = numbered_papers(message.body)
    assert numbered == ["1. Missed 4", "2. Missed 10", "3. Missed 1"]  # the best of the eleven days
    assert "Before the pause" not in message.body
    label = "Catch-up: the best of what you missed · 13 – 23 November 2026"
    assert label in message.body and label in html
    assert message.subject.startswith("Catch-up, 3 papers you missed: Missed 4")

    # The next night is an ordinary daily digest again.
    mail.outbox.clear()
    Subscriber.objects.filter(pk=reader.pk).update(last_digest_at=at(EDITION))
    make_paper(30, topics={"reasoning": 0.8}, day=EDITION, title="Today's")
    night(EDITION + timedelta(days=1))
    message, _ = digest_for("back@example.org")
    assert "Catch-up" not in message.body and "Today's" in message.body and "Missed" not in message.body


def test_a_followed_author_and_category_make_the_digest():
    others = {"authors": ["Edsger Dijkstra"]}
    make_paper(1, topics={"reasoning": 0.9}, upvotes=90, title="On topic", **others)
    make_paper(2, topics={}, authors=["Grace Hopper", "Alan Turing"], upvotes=0, title="Compilers, again")
    make_paper(
        3,
        topics={},
        featured_on=None,
        published_at=at(YESTERDAY, 17),
        categories=["cs.RO"],
        title="Stair climbing",
        **others,
    )
    make_paper(4, topics={}, categories=["cs.CV"], title="Not followed", **others)
    make_reader(
        "follower@example.org",
        ["reasoning"],
        followed_authors=["G. Hopper"],
        arxiv_categories=["cs.RO"],
        digest_size=2,
    )
    night()
    message, html = digest_for("follower@example.org")
    assert "1. Compilers, again" in message.body
    assert "Why: Author: Grace Hopper" in message.body and "Author: Grace Hopper" in html
    assert "On topic" in message.body
    assert "Stair climbing" not in message.body  # ranking still applies: two papers, the size
    assert "Not followed" not in message.body

    mail.outbox.clear()
    Subscriber.objects.filter(email="follower@example.org").update(digest_size=5, last_digest_at=None)
    from digest.models import Delivery

    Delivery.objects.all().delete()
    night()
    message, _ = digest_for("follower@example.org")
    assert "Stair climbing" in message.body and "Why: Category: Robotics (cs.RO)" in message.body


@pytest.mark.django_db
def test_a_weekly_interest_index_reuses_the_daily_ones_analysis_and_equals_a_fresh_one(monkeypatch):
    from digest.compose import DigestComposer
    from digest.ranking import InterestIndex

    make_paper(1, topics={"agents": 0.9}, title="Graph agents that plan", abstract="Agents plan over graphs.")
    make_paper(
        2, topics={"agents": 0.9}, day=YESTERDAY - timedelta(days=3), title="Tool use", abstract="Tools help."
    )
    composer = DigestComposer.for_edition(EDITION)
    daily = composer.ranker(YESTERDAY)
    assert daily.index.sequences
    analysed: list[str] = []
    real = daily.analyzer.analyse
    monkeypatch.setattr(daily.analyzer, "analyse", lambda text: analysed.append(text) or real(text))
    weekly = composer.ranker(YESTERDAY - timedelta(days=6))
    assert weekly.analyzer is daily.analyzer
    index = weekly.index
    # Only the paper the daily window did not hold is analysed again.
    assert analysed and all("Graph agents" not in text and "Agents plan" not in text for text in analysed)
    monkeypatch.undo()
    fresh = InterestIndex(weekly.candidates, index.stats, weekly.analyzer)
    assert (fresh.postings, fresh.counts, fresh.sequences, fresh.surface) == (
        index.postings,
        index.counts,
        index.sequences,
        index.surface,
    )
