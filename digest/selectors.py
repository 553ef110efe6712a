"""Reads for papers and topics."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from django.db.models import Count, Q, QuerySet

from digest.models import CorpusStat, Delivery, Feedback, Paper, PaperTopic, TermStat, Topic
from digest.papers import PaperView, inert, safe_url
from digest.ranking import Affinity
from digest.tagging.analysis import FIELDS, CorpusStats
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


def papers_export(*, day: date | None = None) -> list[dict[str, Any]]:
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


def corpus_stats_for(*, terms: Iterable[str]) -> CorpusStats:
    """The archive's totals and the document frequencies of these terms (others count as unseen)."""
    totals = CorpusStat.objects.filter(pk=1).first()
    stats = CorpusStats()
    if totals is None:
        return stats
    stats.papers = totals.papers
    stats.words = {name: getattr(totals, f"{name}_words") for name in FIELDS}
    wanted = list(set(terms))
    for start in range(0, len(wanted), 2000):
        rows = TermStat.objects.filter(term__in=wanted[start : start + 2000]).values_list("term", "papers")
        stats.df.update(rows)
    return stats


def paper_topic_evidence(*, paper_ids: Iterable[int]) -> dict[int, dict[str, tuple[str, ...]]]:
    """Paper id -> {topic slug: the phrases that tagged it}; empty for curator tags."""
    evidence: dict[int, dict[str, tuple[str, ...]]] = {}
    rows = PaperTopic.objects.filter(
        paper_id__in=list(paper_ids), score__gt=0, topic__is_active=True
    ).values_list("paper_id", "topic__slug", "evidence")
    for paper_id, slug, phrases in rows:
        evidence.setdefault(paper_id, {})[slug] = tuple(phrases or ())
    return evidence


def readers_for_deliveries(
    *,
    edition: date,
    rows: list[tuple[int, int, int]],
    require_active: bool = True,
    subscriber_query: QuerySet[Any, Any] | None = None,
) -> tuple[dict[int, Reader], dict[int, str]]:
    """Readers for claimed rows (delivery id, subscriber id, attempts), in bulk.

    `subscriber_query`, a subquery of subscriber ids that covers the rows (a chunk's
    claimed deliveries), stands in for the list of ids in every query, so a
    chunk of thousands of rows does not send thousands of parameters six times.

    Returns readers by delivery id, and the status of subscribers who are no
    longer active (they unsubscribed after planning)."""
    # compose reads papers through this module, so it is imported when called.
    from digest.compose import SENT_LOOKBACK_DAYS, Reader, build_preferences, digest_window

    subscriber_ids: Any = (
        subscriber_query if subscriber_query is not None else [subscriber_id for _, subscriber_id, _ in rows]
    )
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
            "show_trending",
            "with_abstracts",
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
        categories, authors, paused_at, resumed_at, show_trending, with_abstracts = row[8:]
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
                show_trending=show_trending,
                categories=categories or (),
                authors=authors or (),
            ),
            window_start=window.start,
            kind=window.kind,
            already_sent=frozenset(sent_before.get(subscriber_id, ())),
            delivery_id=delivery_id,
            frequency=frequency,
            with_abstracts=with_abstracts,
        )
    return readers, inactive


# --- What composing and the web pages read -----------------------------------------


PAPER_VIEW_FIELDS = (
    "id",
    "arxiv_id",
    "title",
    "authors",
    "abstract",
    "upvotes",
    "num_comments",
    "github_repo",
    "project_page",
    "thumbnail_url",
    "featured_on",
    "pinned",
    "ai_keywords",
    "ai_summary",
    "categories",
    "published_at",
)


def paper_views(queryset: QuerySet[Paper]) -> dict[int, PaperView]:
    """PaperViews (in the queryset's order) for these papers, with their topic scores, in two queries."""
    papers = list(queryset.values_list(*PAPER_VIEW_FIELDS))
    scores = paper_topic_scores(paper_ids=[row[0] for row in papers])
    evidence = paper_topic_evidence(paper_ids=[row[0] for row in papers])
    views: dict[int, PaperView] = {}
    for row in papers:
        data = dict(zip(PAPER_VIEW_FIELDS, row, strict=True))
        views[data["id"]] = PaperView(
            id=data["id"],
            arxiv_id=data["arxiv_id"],
            title=inert(data["title"]),
            authors=tuple(inert(str(name)) for name in (data["authors"] or [])),
            abstract=inert(data["abstract"]),
            upvotes=data["upvotes"],
            num_comments=data["num_comments"],
            github_repo=safe_url(data["github_repo"]),
            project_page=safe_url(data["project_page"]),
            thumbnail_url=safe_url(data["thumbnail_url"]),
            featured_on=data["featured_on"],
            pinned=data["pinned"],
            keywords=tuple(str(k) for k in (data["ai_keywords"] or [])),
            topic_scores=scores.get(data["id"], {}),
            ai_summary=inert(data["ai_summary"]),
            topic_evidence=evidence.get(data["id"], {}),
            categories=tuple(str(c) for c in (data["categories"] or [])),
            day=data["featured_on"] or (data["published_at"].date() if data["published_at"] else None),
        )
    return views


def load_papers(*, since: date, until: date) -> dict[int, PaperView]:
    """Visible papers featured (or, for arXiv-only papers, published) in [since, until]."""
    rows = Paper.objects.filter(hidden=False).filter(
        Q(featured_on__gte=since, featured_on__lte=until)
        | Q(featured_on__isnull=True, published_at__date__gte=since, published_at__date__lte=until)
    )
    return paper_views(rows)


def load_papers_by_id(paper_ids: Iterable[int]) -> dict[int, PaperView]:
    """Visible papers among these ids; hidden or deleted ones are simply absent."""
    return paper_views(Paper.objects.filter(hidden=False, id__in=list(paper_ids)))


def load_affinities(subscriber_ids: list[int] | QuerySet[Any, Any]) -> dict[int, Affinity]:
    """Each reader's learned topic weights from their 👍/👎 votes and their fitted model (three queries)."""
    from digest.services.learning import learned_models

    models = learned_models(subscriber_ids=subscriber_ids)
    votes = list(
        Feedback.objects.filter(subscriber_id__in=subscriber_ids).values_list(
            "subscriber_id", "paper_id", "vote"
        )
    )
    if not votes:
        return {sid: Affinity(learned=model) for sid, model in models.items()}
    topic_scores: dict[int, dict[str, float]] = defaultdict(dict)
    for paper_id, slug, score in PaperTopic.objects.filter(
        paper_id__in={paper_id for _, paper_id, _ in votes}, score__gt=0
    ).values_list("paper_id", "topic__slug", "score"):
        topic_scores[paper_id][slug] = score
    per_reader: dict[int, list[tuple[int, dict[str, float]]]] = defaultdict(list)
    for subscriber_id, paper_id, vote in votes:
        per_reader[subscriber_id].append((vote, topic_scores.get(paper_id, {})))
    found = {
        sid: Affinity.from_votes(reader_votes, models.get(sid)) for sid, reader_votes in per_reader.items()
    }
    for sid, model in models.items():
        found.setdefault(sid, Affinity(learned=model))
    return found


def topic_names() -> dict[str, str]:
    return dict(Topic.objects.values_list("slug", "name"))


# --- The public daily pages ----------------------------------------------------------


def featured_days() -> list[tuple[date, int]]:
    """Days with visible papers, newest first, with how many papers each has."""
    rows = (
        Paper.objects.filter(hidden=False, featured_on__isnull=False)
        .values("featured_on")
        .annotate(count=Count("id"))
        .order_by("-featured_on")
        .values_list("featured_on", "count")
    )
    # featured_on is never null here (filtered above); the stubs cannot know that.
    return [(day, count) for day, count in rows if day is not None]


def latest_featured_day() -> date | None:
    return (
        Paper.objects.filter(hidden=False, featured_on__isnull=False)
        .order_by("-featured_on")
        .values_list("featured_on", flat=True)
        .first()
    )


def neighbour_days(day: date) -> tuple[date | None, date | None]:
    """The nearest earlier and later days with visible papers."""
    visible = Paper.objects.filter(hidden=False, featured_on__isnull=False)
    earlier = (
        visible.filter(featured_on__lt=day).order_by("-featured_on").values_list("featured_on", flat=True)
    )
    later = visible.filter(featured_on__gt=day).order_by("featured_on").values_list("featured_on", flat=True)
    return earlier.first(), later.first()


def papers_of_day(*, day: date, topic: str | None = None) -> list[PaperView]:
    """A day's visible papers, most upvoted first; with a topic slug, only papers tagged with it."""
    rows = Paper.objects.filter(hidden=False, featured_on=day)
    if topic:
        rows = rows.filter(paper_topics__topic__slug=topic, paper_topics__score__gt=0).distinct()
    return list(paper_views(rows.order_by("-upvotes", "arxiv_id")).values())


def day_topics(*, day: date) -> list[tuple[str, str, int]]:
    """(slug, name, papers) for the active topics tagged on a day's visible papers, largest first."""
    rows = (
        PaperTopic.objects.filter(
            paper__featured_on=day, paper__hidden=False, score__gt=0, topic__is_active=True
        )
        .values("topic__slug", "topic__name")
        .annotate(count=Count("paper", distinct=True))
        .order_by("-count", "topic__name")
        .values_list("topic__slug", "topic__name", "count")
    )
    return list(rows)
