"""Retention: finished delivery rows past DIGEST_DELIVERY_RETENTION_DAYS are
counted into rollups, then deleted, without opening a way to send twice."""

from datetime import date, timedelta

import pytest
from django.core.management import CommandError, call_command

from digest.models import Delivery, DeliveryRollup, DigestRun, SubscriberDeliveryRollup
from digest.services.retention import EditionTooOld, deliveries_purge, retention_cutoff
from digest.services.runs import digest_run_start
from subscribers.services import subscriber_export
from tests.digest.builders import make_reader
from tests.support import run_python

pytestmark = pytest.mark.django_db

TODAY = date(2026, 12, 1)
OLD = date(2026, 5, 10)  # 205 days before TODAY
OLDER = date(2026, 4, 20)
RECENT = date(2026, 11, 20)
S = Delivery.Status


@pytest.fixture
def readers():
    return [make_reader(f"r{i}@example.org", ["reasoning"]) for i in range(3)]


def rows(readers, edition, statuses):
    run = DigestRun.objects.create(edition=edition, status=DigestRun.Status.SUCCEEDED)
    return [
        Delivery.objects.create(subscriber=reader, edition=edition, run=run, status=status, paper_ids=[1])
        for reader, status in zip(readers, statuses, strict=True)
    ]


def rollups():
    return {(r.edition, r.status): r.count for r in DeliveryRollup.objects.all()}


def test_old_finished_rows_are_counted_then_deleted_in_batches(readers):
    rows(readers, OLDER, [S.SENT, S.SENT, S.FAILED])
    rows(readers, OLD, [S.SENT, S.EMPTY, S.CANCELLED])
    kept = rows(readers, RECENT, [S.SENT, S.SENT, S.SENT])
    assert retention_cutoff(today=TODAY) == TODAY - timedelta(days=180)

    assert deliveries_purge(today=TODAY, batch_size=2) == 6

    assert set(Delivery.objects.values_list("id", flat=True)) == {row.id for row in kept}
    assert rollups() == {
        (OLDER, S.SENT): 2,
        (OLDER, S.FAILED): 1,
        (OLD, S.SENT): 1,
        (OLD, S.EMPTY): 1,
        (OLD, S.CANCELLED): 1,
    }
    first = SubscriberDeliveryRollup.objects.filter(subscriber=readers[0]).order_by("month")
    assert [(r.month, r.status, r.count, r.first_edition, r.last_edition) for r in first] == [
        (date(2026, 4, 1), S.SENT, 1, OLDER, OLDER),
        (date(2026, 5, 1), S.SENT, 1, OLD, OLD),
    ]


def test_purging_again_adds_nothing_and_later_purges_add_to_the_counts(readers):
    rows(readers[:2], OLD, [S.SENT, S.SENT])
    deliveries_purge(today=TODAY)
    assert deliveries_purge(today=TODAY) == 0
    assert rollups() == {(OLD, S.SENT): 2}
    # A row of the same edition finished later (a re-send) is purged on a later night.
    Delivery.objects.create(
        subscriber=readers[2], edition=OLD, status=S.SENT, run=DigestRun.objects.create(edition=OLD)
    )
    DigestRun.objects.filter(edition=OLD).update(status=DigestRun.Status.SUCCEEDED)
    assert deliveries_purge(today=TODAY) == 1
    assert rollups() == {(OLD, S.SENT): 3}
    (monthly,) = SubscriberDeliveryRollup.objects.filter(subscriber=readers[2])
    assert monthly.count == 1


def test_unfinished_rows_and_editions_with_a_run_in_progress_are_kept(readers):
    rows(readers[:1], OLD, [S.PLANNED])
    sending = DigestRun.objects.create(edition=OLDER, status=DigestRun.Status.SENDING)
    Delivery.objects.create(subscriber=readers[1], edition=OLDER, run=sending, status=S.SENT)
    assert deliveries_purge(today=TODAY) == 0
    assert Delivery.objects.count() == 2


def test_the_never_send_twice_window_is_never_purged(readers, settings):
    # The shortest retention allowed still keeps the 14 days of sent papers, and the chart's 30.
    settings.DIGEST_DELIVERY_RETENTION_DAYS = 30
    for edition in [TODAY - timedelta(days=d) for d in (1, 14, 30)]:
        rows(readers[:1], edition, [S.SENT])
    assert deliveries_purge(today=TODAY) == 0
    assert Delivery.objects.count() == 3


def test_a_purged_edition_cannot_be_run_again(readers):
    rows(readers, OLD, [S.SENT, S.SENT, S.SENT])
    deliveries_purge(today=TODAY)
    with pytest.raises(EditionTooOld, match="were purged"):
        digest_run_start(edition=OLD, fetch=False)
    assert not Delivery.objects.filter(edition=OLD).exists()
    assert DigestRun.objects.filter(edition=OLD).count() == 1  # the old run only
    with pytest.raises(CommandError, match="cannot be run again"):
        call_command("run_digest", "--date", OLD.isoformat(), "--no-fetch")


def test_the_admin_refuses_to_start_a_purged_edition(readers, admin_client):
    rows(readers, OLD, [S.SENT, S.SENT, S.SENT])
    deliveries_purge(today=TODAY)
    response = admin_client.post("/admin/digest/digestrun/start/", {"edition": OLD.isoformat(), "fetch": ""})
    assert response.status_code == 200
    assert "cannot be run again" in response.content.decode()
    assert DigestRun.objects.filter(edition=OLD).count() == 1


def test_older_history_is_in_the_export_and_on_the_admin_page(readers, admin_client):
    rows(readers, OLD, [S.SENT, S.SENT, S.EMPTY])
    deliveries_purge(today=TODAY)
    exported = subscriber_export(subscriber=readers[2])
    assert [(r["month"], r["status"], r["count"]) for r in exported["delivery_rollups"]] == [
        ("2026-05-01", "empty", 1)
    ]
    page = admin_client.get(f"/admin/subscribers/subscriber/{readers[0].id}/change/").content.decode()
    assert "Older delivery history" in page
    assert "May 1, 2026" in page


def test_the_nightly_purge_is_in_the_beat_schedule(readers):
    from django_celery_beat.models import PeriodicTask

    entry = PeriodicTask.objects.get(name="purge-old-deliveries")
    assert entry.task == "digest.purge_old_deliveries"
    assert entry.enabled and (entry.crontab.hour, entry.crontab.minute) == ("3", "45")
    from digest.tasks import purge_old_deliveries

    rows(readers[:1], date.today() - timedelta(days=400), [S.SENT])
    assert purge_old_deliveries.delay().get() == 1


def test_a_retention_under_30_days_is_refused_at_startup():
    result = run_python(
        "import django; django.setup()", DIGEST_DELIVERY_RETENTION_DAYS="7", DATABASE_URL=None
    )
    assert result.returncode != 0
    assert "DIGEST_DELIVERY_RETENTION_DAYS must be at least 30" in result.stderr
