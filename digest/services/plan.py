"""Planning: one Delivery row per due reader and edition, and the id ranges that send tasks take."""

from collections import defaultdict
from collections.abc import Iterable
from datetime import date, timedelta

from django.conf import settings
from django.db import connection
from django.db.models import Q
from django.utils import timezone

from digest.models import Delivery, DigestRun
from subscribers.models import Subscriber

Status = Delivery.Status


def due_subscribers(*, edition: date, only_email: str | None = None):
    """Active subscribers whose digest is due on this edition."""
    due = Subscriber.objects.filter(status=Subscriber.Status.ACTIVE).filter(
        Q(frequency=Subscriber.Frequency.DAILY)
        | Q(frequency=Subscriber.Frequency.WEEKLY, weekday=edition.weekday())
    )
    if only_email:
        due = due.filter(email__iexact=only_email)
    return due


def deliveries_plan(*, run: DigestRun, only_email: str | None = None) -> int:
    """One Delivery row per due subscriber; rows that already exist for this
    edition (an earlier or concurrent run) are left alone. Returns rows created.

    Rows are created in order of the readers' preferences (topics, interests,
    frequency, size), so delivery ids, and the chunks cut from them, keep
    readers who will get the same digest together: a chunk ranks and renders
    each list once and can hand its readers to the ESP in one batch."""
    due = due_subscribers(edition=run.edition, only_email=only_email)
    if connection.vendor == "postgresql":
        from django.contrib.postgres.aggregates import ArrayAgg

        due = due.annotate(topic_key=ArrayAgg("topics__id", order_by="topics__id")).order_by(
            "topic_key", "interests", "frequency", "digest_size", "id"
        )
        ids = due.values_list("id", flat=True).iterator(chunk_size=10000)
    else:
        ids = _ids_in_preference_order(due)
    batch: list[Delivery] = []
    for subscriber_id in ids:
        batch.append(Delivery(subscriber_id=subscriber_id, edition=run.edition, run=run))
        if len(batch) >= 10000:
            Delivery.objects.bulk_create(batch, ignore_conflicts=True)
            batch = []
    if batch:
        Delivery.objects.bulk_create(batch, ignore_conflicts=True)
    return Delivery.objects.filter(run=run).count()


def _ids_in_preference_order(due) -> list[int]:
    """The same order as the PostgreSQL query, sorted here: the embedded mode
    (SQLite) has no array aggregate, and its subscriber lists are small."""
    topics: dict[int, list[int]] = defaultdict(list)
    for subscriber_id, topic_id in Subscriber.topics.through.objects.filter(subscriber__in=due).values_list(
        "subscriber_id", "topic_id"
    ):
        topics[subscriber_id].append(topic_id)
    rows = due.values_list("id", "interests", "frequency", "digest_size")
    ordered = sorted(rows, key=lambda row: (sorted(topics.get(row[0], ())), row[1], row[2], row[3], row[0]))
    return [row[0] for row in ordered]


def chunk_ranges(ids: Iterable[int], size: int) -> list[tuple[int, int]]:
    """Split sorted ids into (first, last) ranges of at most `size` ids."""
    ranges = []
    first = last = None
    count = 0
    for delivery_id in ids:
        if first is None:
            first = delivery_id
        last = delivery_id
        count += 1
        if count == size:
            ranges.append((first, last))
            first, count = None, 0
    if first is not None:
        ranges.append((first, last))
    return ranges


def pending_ranges(*, run: DigestRun, stale_only: bool = False) -> list[tuple[int, int]]:
    """Ranges of this run's rows still to send: planned, or claimed by a worker
    that has gone quiet for longer than DIGEST_CLAIM_TIMEOUT."""
    stale = timezone.now() - timedelta(seconds=settings.DIGEST_CLAIM_TIMEOUT)
    pending = Q(status__in=(Status.SENDING, Status.INFLIGHT), claimed_at__lt=stale)
    if not stale_only:
        pending |= Q(status=Status.PLANNED)
    ids = Delivery.objects.filter(run=run).filter(pending).order_by("id").values_list("id", flat=True)
    return chunk_ranges(ids.iterator(chunk_size=10000), settings.DIGEST_CHUNK_SIZE)
