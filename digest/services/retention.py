"""Retention: old delivery rows are counted into rollups, then deleted.

A delivery row a night per reader adds up (100k readers make 36 million rows a
year). Rows older than DIGEST_DELIVERY_RETENTION_DAYS that are finished (sent,
empty, cancelled or failed) are folded, a batch at a time, into two small
tables: counts per edition and status (`DeliveryRollup`), and each reader's
counts per month and status (`SubscriberDeliveryRollup`, shown as their older
history in the admin and included in their data export), and then deleted.

What must outlive the rows is safe because the retention is never shorter
than 30 days (settings refuse less):

* never sending a paper twice reads the papers sent in the last 14 days;
* the unique (subscriber, edition) constraint stops a second run of an
  edition; a run for an edition whose rows were purged is refused outright
  (`deliveries_retention_guard`), so it can never send that edition again, and
  the purge leaves alone editions with a run in progress;
* a failed delivery can be re-sent while its row is kept;
* the admin's 30-day chart reads the runs' counters, which are kept.
"""

import logging
from datetime import date, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, Max, Min, QuerySet
from django.db.models.functions import TruncMonth
from django.utils import timezone

from digest.models import Delivery, DeliveryRollup, DigestRun, SubscriberDeliveryRollup

logger = logging.getLogger(__name__)
Status = Delivery.Status

FINISHED = (Status.SENT, Status.EMPTY, Status.CANCELLED, Status.FAILED, Status.UNCERTAIN)
PURGE_BATCH_SIZE = 5000
_UPSERT_ROWS = 1000


class EditionTooOld(ValueError):
    """A run was asked for an edition whose delivery rows may already be purged."""


def retention_cutoff(*, today: date | None = None) -> date:
    """The first edition whose rows are kept."""
    today = today or timezone.now().date()
    return today - timedelta(days=settings.DIGEST_DELIVERY_RETENTION_DAYS)


def deliveries_retention_guard(*, edition: date) -> None:
    """Refuse a run for an edition whose rows were purged: with them went the
    record of who already got it, so it could send twice."""
    if DeliveryRollup.objects.filter(edition=edition).exists():
        raise EditionTooOld(
            f"The delivery rows of edition {edition} were purged (DIGEST_DELIVERY_RETENTION_DAYS = "
            f"{settings.DIGEST_DELIVERY_RETENTION_DAYS}), so it cannot be run again."
        )


def deliveries_purge(*, today: date | None = None, batch_size: int = PURGE_BATCH_SIZE) -> int:
    """Fold finished rows of editions before the cutoff into the rollups and
    delete them, one transaction per batch; returns how many rows went.

    Each batch locks its rows (skipping rows another purge holds), so two
    purges at once never count a row twice."""
    cutoff = retention_cutoff(today=today)
    purged = 0
    while True:
        with transaction.atomic():
            ids = list(
                Delivery.objects.select_for_update(skip_locked=True)
                .filter(edition__lt=cutoff, status__in=FINISHED)
                .exclude(edition__in=_editions_running())
                .order_by("id")
                .values_list("id", flat=True)[:batch_size]
            )
            if not ids:
                break
            _roll_up(ids)
            Delivery.objects.filter(id__in=ids).delete()
        purged += len(ids)
    if purged:
        logger.info("purged %s delivery rows of editions before %s into rollups", purged, cutoff)
    return purged


def _editions_running() -> QuerySet[DigestRun, Any]:
    return DigestRun.objects.exclude(status__in=(DigestRun.Status.SUCCEEDED, DigestRun.Status.FAILED)).values(
        "edition"
    )


def _roll_up(ids: list[int]) -> None:
    rows = Delivery.objects.filter(id__in=ids).order_by()
    per_edition = [
        (row["edition"], row["status"], row["n"])
        for row in rows.values("edition", "status").annotate(n=Count("id"))
    ]
    per_reader = [
        (row["subscriber_id"], row["month"], row["status"], row["n"], row["first"], row["last"])
        for row in rows.annotate(month=TruncMonth("edition"))
        .values("subscriber_id", "month", "status")
        .annotate(n=Count("id"), first=Min("edition"), last=Max("edition"))
    ]
    _upsert(
        DeliveryRollup._meta.db_table,
        ("edition", "status", "count"),
        ("edition", "status"),
        per_edition,
        {"count": "{t}.count + excluded.count"},
    )
    _upsert(
        SubscriberDeliveryRollup._meta.db_table,
        ("subscriber_id", "month", "status", "count", "first_edition", "last_edition"),
        ("subscriber_id", "month", "status"),
        per_reader,
        {
            "count": "{t}.count + excluded.count",
            "first_edition": "MIN({t}.first_edition, excluded.first_edition)",
            "last_edition": "MAX({t}.last_edition, excluded.last_edition)",
        },
    )


def _upsert(
    table: str, columns: tuple[str, ...], key: tuple[str, ...], rows: list[tuple], merge: dict[str, str]
) -> None:
    """INSERT … ON CONFLICT DO UPDATE that adds to existing counts (PostgreSQL and SQLite alike)."""
    if connection.vendor == "postgresql":
        # PostgreSQL's two-argument MIN/MAX are LEAST/GREATEST.
        merge = {c: e.replace("MIN(", "LEAST(").replace("MAX(", "GREATEST(") for c, e in merge.items()}
    quoted = connection.ops.quote_name
    assignments = ", ".join(
        f"{quoted(column)} = {expr.format(t=quoted(table))}" for column, expr in merge.items()
    )
    placeholders = "(" + ", ".join(["%s"] * len(columns)) + ")"
    for start in range(0, len(rows), _UPSERT_ROWS):
        part = rows[start : start + _UPSERT_ROWS]
        # Table and column names come from the models above; values travel as parameters.
        sql = (
            f"INSERT INTO {quoted(table)} ({', '.join(quoted(c) for c in columns)}) "  # noqa: S608
            f"VALUES {', '.join([placeholders] * len(part))} "
            f"ON CONFLICT ({', '.join(quoted(c) for c in key)}) DO UPDATE SET {assignments}"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, [value for row in part for value in row])
