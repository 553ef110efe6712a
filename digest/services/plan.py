"""Planning: one Delivery row per due reader and edition, and the id ranges that send tasks take."""

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import date, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from digest.models import Delivery, DigestRun
from subscribers.models import Subscriber

logger = logging.getLogger(__name__)
Status = Delivery.Status


def due_subscribers(*, edition: date, only_email: str | None = None) -> QuerySet[Subscriber]:
    """Active subscribers whose digest is due on this edition."""
    due = Subscriber.objects.filter(status=Subscriber.Status.ACTIVE).filter(
        Q(frequency=Subscriber.Frequency.DAILY)
        | Q(frequency=Subscriber.Frequency.WEEKLY, weekday=edition.weekday())
    )
    if only_email:
        due = due.filter(email__iexact=only_email)
    return due


# Rows per planning batch: each batch commits on its own, with the run's progress marker.
PLAN_BATCH_SIZE = 5000
# Why rows of a failed run may be taken over by a later run of the same edition.
RUN_TIMED_OUT = "run timed out"


def deliveries_plan(
    *, run: DigestRun, only_email: str | None = None, on_batch: Callable[[], object] | None = None
) -> int:
    """One Delivery row per due subscriber for this run; returns the run's rows.

    Idempotent and resumable: each batch of rows commits with the run's progress
    marker (`planned_at`), readers who already have a row for the edition are
    skipped, so planning again after a crash (a lost database, a killed worker)
    plans exactly the readers still missing. Rows an earlier run of the edition
    left unsent when it failed are adopted by this run rather than silently
    skipped by the unique (subscriber, edition) constraint. Rows of a run still
    alive are left to it.

    Rows are created in order of the readers' preferences (topics, interests,
    frequency, size), so delivery ids, and the chunks cut from them, keep
    readers who will get the same digest together: a chunk ranks and renders
    each list once and can hand its readers to the ESP in one batch.

    `on_batch` is called after each batch commits (the planner queues its
    chunks there, so sending starts while the rest is planned)."""
    due = due_subscribers(edition=run.edition, only_email=only_email or run.only_email or None)
    deliveries_adopt(run=run, due=due)
    unplanned = due.exclude(
        Exists(Delivery.objects.filter(subscriber_id=OuterRef("pk"), edition=run.edition))
    )
    if connection.vendor == "postgresql":
        from django.contrib.postgres.aggregates import ArrayAgg

        unplanned = unplanned.annotate(topic_key=ArrayAgg("topics__id", order_by="topics__id")).order_by(
            "topic_key", "interests", "frequency", "digest_size", "id"
        )
        ids: Iterable[int] = unplanned.values_list("id", flat=True).iterator(chunk_size=PLAN_BATCH_SIZE)
    else:
        ids = _ids_in_preference_order(unplanned)
    batch: list[int] = []
    for subscriber_id in ids:
        batch.append(subscriber_id)
        if len(batch) >= PLAN_BATCH_SIZE:
            plan_batch(run=run, subscriber_ids=batch)
            batch = []
            if on_batch is not None:
                on_batch()
    if batch:
        plan_batch(run=run, subscriber_ids=batch)
    return Delivery.objects.filter(run=run).count()


def plan_batch(*, run: DigestRun, subscriber_ids: list[int]) -> None:
    """Write one batch of rows and move the run's progress marker, in one transaction."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            _insert_rows(run=run, subscriber_ids=subscriber_ids)
        else:
            Delivery.objects.bulk_create(
                [Delivery(subscriber_id=sid, edition=run.edition, run=run) for sid in subscriber_ids],
                ignore_conflicts=True,
            )
        DigestRun.objects.filter(id=run.pk).update(planned_at=timezone.now())


def _insert_rows(*, run: DigestRun, subscriber_ids: list[int]) -> None:
    """bulk_create(ignore_conflicts=True) in one statement whose only per-row
    value is the subscriber id, sent as one array: every other column holds
    what the model gives a new row (its defaults, prepared by its own fields).
    Binding and quoting a dozen parameters per row cost more than the insert."""
    template = Delivery(subscriber_id=0, edition=run.edition, run=run)
    columns: list[str] = []
    values: list[str] = []
    params: list[Any] = []
    quote = connection.ops.quote_name
    for model_field in Delivery._meta.concrete_fields:
        if model_field.primary_key:
            continue
        columns.append(quote(str(model_field.column)))
        if model_field.attname == "subscriber_id":
            values.append("ids.id")
            continue
        value = model_field.get_db_prep_save(model_field.pre_save(template, add=True), connection)
        values.append(f"%s::{model_field.db_type(connection)}")
        params.append(value)
    params.append(list(subscriber_ids))
    table = quote(Delivery._meta.db_table)
    # Names and types come from the model, every value is a parameter.
    sql = (
        f"INSERT INTO {table} ({', '.join(columns)}) SELECT {', '.join(values)} "  # noqa: S608
        "FROM unnest(%s::bigint[]) AS ids(id) ON CONFLICT DO NOTHING"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def deliveries_adopt(*, run: DigestRun, due: QuerySet[Subscriber]) -> int:
    """Take over the unsent rows of due readers that an earlier run of this
    edition left behind, because it failed or because its planner died (its
    progress marker quiet for DIGEST_CLAIM_TIMEOUT): rows planned, claimed by a
    worker gone quiet, or failed because that run timed out. Rows in flight or
    uncertain are never adopted: the ESP may have them. A dead planner's
    run is closed, so recovery never resumes it. Returns how many rows were
    adopted."""
    stale = timezone.now() - timedelta(seconds=settings.DIGEST_CLAIM_TIMEOUT)
    dead_planners = list(
        DigestRun.objects.filter(edition=run.edition, status=DigestRun.Status.PLANNING)
        .exclude(id=run.pk)
        .filter(Q(planned_at__lt=stale) | Q(planned_at__isnull=True))
        .values_list("id", flat=True)
    )
    unsent = (
        Q(status=Status.PLANNED)
        | Q(status=Status.SENDING, claimed_at__lt=stale)
        | Q(status=Status.SENDING, claimed_at__isnull=True)
        | Q(status=Status.FAILED, error=RUN_TIMED_OUT)
    )
    left_behind = Q(run__isnull=True) | Q(run__status=DigestRun.Status.FAILED) | Q(run_id__in=dead_planners)
    adopted = (
        Delivery.objects.filter(edition=run.edition, subscriber__in=due.values("id"))
        .exclude(run=run)
        .filter(left_behind)
        .filter(unsent)
        .update(run=run, status=Status.PLANNED, claim_token="", claimed_at=None, attempts=0, error="")
    )
    for dead in DigestRun.objects.filter(id__in=dead_planners, status=DigestRun.Status.PLANNING):
        closed = DigestRun.objects.filter(id=dead.pk, status=DigestRun.Status.PLANNING).update(
            status=DigestRun.Status.FAILED,
            finished_at=timezone.now(),
            errors=[*dead.errors, f"planning never finished; run {run.pk} took over its unsent deliveries"],
        )
        if closed:
            logger.warning(
                "run %s for %s: planning never finished, taken over by run %s", dead.pk, dead.edition, run.pk
            )
    if adopted:
        logger.info("run %s adopted %s unsent deliveries of earlier runs of %s", run.pk, adopted, run.edition)
    return adopted


def _ids_in_preference_order(due: QuerySet[Subscriber]) -> list[int]:
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
    """Split sorted ids into (first, last) ranges of at most `size` ids, as even
    as they can be: 3,695 rows in chunks of 2,000 are two of 1,848 and 1,847,
    not 2,000 and 1,695, so no worker is left with the long one."""
    ordered = list(ids)
    if not ordered:
        return []
    count = -(-len(ordered) // max(1, size))
    share, extra = divmod(len(ordered), count)
    ranges: list[tuple[int, int]] = []
    start = 0
    for index in range(count):
        end = start + share + (1 if index < extra else 0)
        ranges.append((ordered[start], ordered[end - 1]))
        start = end
    return ranges


def pending_ranges(*, run: DigestRun, stale_only: bool = False, after_id: int = 0) -> list[tuple[int, int]]:
    """Ranges of this run's rows still to send: planned, or claimed by a worker
    that has gone quiet for longer than DIGEST_CLAIM_TIMEOUT; only rows past
    `after_id` when the ones before it are queued already."""
    stale = timezone.now() - timedelta(seconds=settings.DIGEST_CLAIM_TIMEOUT)
    pending = Q(status__in=(Status.SENDING, Status.INFLIGHT), claimed_at__lt=stale)
    if not stale_only:
        pending |= Q(status=Status.PLANNED)
    ids = (
        Delivery.objects.filter(run=run, id__gt=after_id)
        .filter(pending)
        .order_by("id")
        .values_list("id", flat=True)
    )
    return chunk_ranges(ids.iterator(chunk_size=10000), settings.DIGEST_CHUNK_SIZE)
