"""Reads for papers and topics."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import date, timedelta
from typing import TYPE_CHECKING

from django.db.models import Count, Q, QuerySet

from digest.models import Delivery, Paper, PaperTopic, Topic
from subscribers.models import Subscriber

if TYPE_CHECKING:
    from digest.compose import Reader


def topics_with_paper_counts(queryset: QuerySet[Topic] | None = None) -> QuerySet[Topic]:
    """Topics annotated with ``paper_count``: papers tagged with a positive score."""
    queryset = Topic.objects.all() if queryset is None else queryset
    return queryset.annotate(
        paper_count=Count("paper_topics", filter=Q(paper_topics__score__gt=0), distinct=True)
    )


def paper_topic_scores(*, paper_ids: Iterable[int]) -> dict[int, dict[str, float]]:
    """Paper id -> {topic slug: score}, active topics with score > 0 only.

    Curator rows with score 0 (a topic the curator removed) are left out.
    """
    scores: dict[int, dict[str, float]] = {}
    rows = PaperTopic.objects.filter(
        paper_id__in=list(paper_ids), score__gt=0, topic__is_active=True
    ).values_list("paper_id", "topic__slug", "score")
    for paper_id, slug, score in rows:
        scores.setdefault(paper_id, {})[slug] = score
    return scores


def ranked_slugs(scores: dict[str, float]) -> list[str]:
    """Slugs strongest first, ties by name."""
    return [slug for slug, _ in sorted(scores.items(), key=lambda item: (-item[1], item[0]))]


def papers_export(*, day: date | None = None) -> list[dict]:
    """Plain dicts for ``export_papers``: one per paper, topics strongest first."""
    queryset = Paper.objects.all() if day is None else Paper.objects.filter(featured_on=day)
    papers = list(queryset.order_by("-featured_on", "-upvotes", "arxiv_id"))
    topic_scores = paper_topic_scores(paper_ids=[paper.pk for paper in papers])
    return [
        {
            "arxiv_id": paper.arxiv_id,
            "title": paper.title,
            "upvotes": paper.upvotes,
            "num_comments": paper.num_comments,
            "featured_on": paper.featured_on.isoformat() if paper.featured_on else None,
            "topics": ranked_slugs(topic_scores.get(paper.pk, {})),
            "hidden": paper.hidden,
            "pinned": paper.pinned,
            "sources": paper.sources,
            "github_repo": paper.github_repo,
            "project_page": paper.project_page,
            "hf_url": paper.hf_url,
            "abs_url": paper.abs_url,
        }
        for paper in papers
    ]


def readers_for_deliveries(
    *, edition: date, rows: list[tuple[int, int, int]], require_active: bool = True
) -> tuple[dict[int, Reader], dict[int, str]]:
    """Readers for claimed rows (delivery id, subscriber id, attempts), in bulk.

    Returns readers by delivery id, and the status of subscribers who are no
    longer active (they unsubscribed after planning)."""
    # compose reads papers through this module, so it is imported when called.
    from digest.compose import SENT_LOOKBACK_DAYS, Reader, build_preferences, digest_window, load_affinities

    subscriber_ids = [subscriber_id for _, subscriber_id, _ in rows]
    subscribers = {
        row[0]: row
        for row in Subscriber.objects.filter(id__in=subscriber_ids).values_list(
            "id",
            "email",
            "status",
            "token_version",
            "frequency",
            "interests",
            "digest_size",
            "last_digest_at",
            "arxiv_categories",
            "followed_authors",
            "paused_at",
            "resumed_at",
        )
    }
    topics: dict[int, list[str]] = defaultdict(list)
    for subscriber_id, slug in Subscriber.topics.through.objects.filter(
        subscriber_id__in=subscriber_ids, topic__is_active=True
    ).values_list("subscriber_id", "topic__slug"):
        topics[subscriber_id].append(slug)
    sent_before: dict[int, set[int]] = defaultdict(set)
    for subscriber_id, paper_ids in Delivery.objects.filter(
        subscriber_id__in=subscriber_ids,
        status=Delivery.Status.SENT,
        edition__gte=edition - timedelta(days=SENT_LOOKBACK_DAYS),
        edition__lt=edition,
    ).values_list("subscriber_id", "paper_ids"):
        sent_before[subscriber_id].update(paper_ids or [])
    affinities = load_affinities(subscriber_ids)

    readers: dict[int, Reader] = {}
    inactive: dict[int, str] = {}
    for delivery_id, subscriber_id, _ in rows:
        row = subscribers.get(subscriber_id)
        if row is None or (require_active and row[2] != Subscriber.Status.ACTIVE):
            inactive[delivery_id] = row[2] if row else "deleted"
            continue
        (_, email, _, token_version, frequency, interests, digest_size, last_digest_at) = row[:8]
        categories, authors, paused_at, resumed_at = row[8:]
        window = digest_window(
            edition=edition,
            frequency=frequency,
            last_digest_at=last_digest_at,
            paused_at=paused_at,
            resumed_at=resumed_at,
        )
        readers[delivery_id] = Reader(
            subscriber_id=subscriber_id,
            email=email,
            token_version=token_version,
            preferences=build_preferences(
                topics=topics.get(subscriber_id, ()),
                interests=interests,
                digest_size=digest_size,
                affinity=affinities.get(subscriber_id),
                categories=categories or (),
                authors=authors or (),
            ),
            window_start=window.start,
            kind=window.kind,
            already_sent=frozenset(sent_before.get(subscriber_id, ())),
        )
    return readers, inactive
