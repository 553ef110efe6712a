"""What the reader-facing web pages show: one sent digest, a reader's matches for the feed.

Reads only; the views turn a signed token into a subscriber or delivery and
call one of these.
"""

from dataclasses import dataclass
from datetime import UTC, date, datetime, time

from django.conf import settings

from digest.compose import build_preferences, edition_label, interests_summary
from digest.feedback import make_feedback_token
from digest.models import Delivery
from digest.papers import PaperView, inert
from digest.ranking import Preferences, Ranker
from digest.selectors import featured_days, load_affinities, load_papers, load_papers_by_id, topic_names
from subscribers.models import Subscriber

# Featured days a reader's feed covers.
FEED_DAYS = 7


@dataclass(frozen=True)
class PaperEntry:
    """A paper on a reader's page: why it is there and their own vote links."""

    paper: PaperView
    reasons: tuple[str, ...]
    vote_token: str = ""


@dataclass(frozen=True)
class SentDigestPage:
    delivery: Delivery
    subscriber: Subscriber
    edition_label: str
    entries: list[PaperEntry]
    interests_summary: str


def reader_preferences(subscriber: Subscriber) -> Preferences:
    affinity = load_affinities([subscriber.pk]).get(subscriber.pk)
    return build_preferences(
        topics=subscriber.topics.filter(is_active=True).values_list("slug", flat=True),
        interests=subscriber.interests,
        digest_size=subscriber.digest_size,
        affinity=affinity,
        categories=subscriber.arxiv_categories or (),
        authors=subscriber.followed_authors or (),
    )


def _ranker(papers: list[PaperView], names: dict[str, str]) -> Ranker:
    return Ranker(
        papers,
        topic_names=names,
        gate=settings.DIGEST_RELEVANCE_GATE,
        trend_weight=settings.DIGEST_TREND_WEIGHT,
    )


def sent_digest_page(*, delivery: Delivery) -> SentDigestPage:
    """A sent digest as its reader got it, in the order it was sent, with full abstracts.

    Papers hidden since are left out. The "why" line is worked out again from
    the reader's current preferences; a paper that no longer matches them shows none."""
    subscriber = delivery.subscriber
    papers = load_papers_by_id(delivery.paper_ids or [])
    ordered = [papers[paper_id] for paper_id in delivery.paper_ids or [] if paper_id in papers]
    names = topic_names()
    preferences = reader_preferences(subscriber)
    ranker = _ranker(ordered, names)
    affinity = preferences.affinity.as_dict()
    entries = []
    for paper in ordered:
        found = ranker.match(paper, preferences, affinity)
        entries.append(
            PaperEntry(
                paper=paper,
                reasons=tuple(inert(reason) for reason in found.reasons) if found else (),
                vote_token=make_feedback_token(subscriber.pk, paper.id, subscriber.token_version),
            )
        )
    kind = "weekly" if subscriber.frequency == Subscriber.Frequency.WEEKLY else "daily"
    return SentDigestPage(
        delivery=delivery,
        subscriber=subscriber,
        edition_label=edition_label(delivery.edition, kind),
        entries=entries,
        interests_summary=interests_summary(preferences, names),
    )


def reader_matches(*, subscriber: Subscriber, days: int = FEED_DAYS) -> list[PaperEntry]:
    """The papers that match a reader on each of the latest featured days, newest day first:
    what a daily digest would have carried, before papers already sent are dropped."""
    recent = [day for day, _ in featured_days()[:days]]
    if not recent:
        return []
    papers = load_papers(since=min(recent), until=max(recent))
    by_day: dict[date, list[PaperView]] = {}
    for paper in papers.values():
        if paper.featured_on is not None:
            by_day.setdefault(paper.featured_on, []).append(paper)
    names = topic_names()
    preferences = reader_preferences(subscriber)
    entries: list[PaperEntry] = []
    for day in sorted(by_day, reverse=True):
        for item in _ranker(by_day[day], names).rank(preferences):
            entries.append(PaperEntry(paper=papers[item.paper_id], reasons=item.reasons))
    return entries


def featured_at(day: date | None) -> datetime:
    """When a featured day's papers became news: the start of that day, UTC."""
    return datetime.combine(day or date(1970, 1, 1), time(0, 0), tzinfo=UTC)
