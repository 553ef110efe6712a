"""PostgreSQL dropping a real Celery worker's connection while it plans the night:
the run stays in planning, the admins are told, recover_runs on the worker plans
the rest and sends, and every due reader gets exactly one digest."""

from datetime import timedelta

import psycopg
from django.utils import timezone

from digest.models import Delivery, DigestRun
from digest.tasks import nightly_run, recover_runs
from tests.digest.builders import EDITION
from tests.fake_esp import FakeESP
from tests.faults.conftest import esp_env, on_real_services, seed_readers
from tests.support import test_database_url, wait_for

pytestmark = on_real_services()

ADMIN = "ops@example.org"


def admin_mail(esp: FakeESP) -> list[dict]:
    return [entry for entry in esp.state.invalid if entry["to"] == ADMIN]


def blocked_writer(other: psycopg.Connection) -> int | None:
    """The backend waiting for our lock on the delivery table: the worker, planning."""
    # Activity is read once per transaction unless the snapshot is dropped.
    other.execute("SELECT pg_stat_clear_snapshot()")
    row = other.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
        "AND wait_event_type = 'Lock' AND query ILIKE '%digest_delivery%'"
    ).fetchone()
    return row[0] if row else None


def test_database_lost_while_a_worker_plans_then_recovery_sends_everyone_once(
    postgres_required, celery_worker_factory
):
    emails = seed_readers(40)
    with FakeESP() as esp, psycopg.connect(test_database_url()) as other:
        worker = celery_worker_factory(extra_env=esp_env(esp, ADMIN_EMAILS=ADMIN, DIGEST_RECOVER_EVERY=3600))
        # Hold the delivery table, so the planner is surely mid-plan when its connection goes.
        other.execute("LOCK TABLE digest_delivery IN SHARE ROW EXCLUSIVE MODE")
        nightly_run.apply_async(args=[EDITION.isoformat(), False], queue=worker.queue)
        try:
            pid = wait_for(lambda: blocked_writer(other), timeout=60, message="the worker planning")
        except BaseException:
            print(worker.log()[-6000:])
            raise
        other.execute("SELECT pg_terminate_backend(%s)", [pid])
        other.commit()

        def interrupted():
            run = DigestRun.objects.filter(edition=EDITION).first()
            return run if run and run.errors and "planning interrupted" in run.errors[-1] else None

        run = wait_for(interrupted, timeout=60, message="the run to record the interruption")
        assert run.status == DigestRun.Status.PLANNING
        # The fake ESP holds every message to the digest's rules; the admins' mail has no
        # unsubscribe headers, so it lands among the invalid ones: that it came is what counts.
        wait_for(lambda: admin_mail(esp), timeout=30, message="the admins' mail")

        # The planner's progress marker counts as gone quiet after DIGEST_CLAIM_TIMEOUT.
        DigestRun.objects.filter(id=run.pk).update(planned_at=timezone.now() - timedelta(hours=1))
        recover_runs.apply_async(queue=worker.queue)

        def finished():
            run.refresh_from_db()
            return run.status == DigestRun.Status.SUCCEEDED

        try:
            wait_for(finished, timeout=90, message="the recovered run to finish")
        except BaseException:
            print(worker.log()[-6000:])
            raise

    assert (run.due_count, run.sent_count, run.plan_attempts) == (40, 40, 1)
    counts = esp.state.recipients()
    assert set(counts) == set(emails) and set(counts.values()) == {1}, counts
    assert len(admin_mail(esp)) == 1
    assert [entry for entry in esp.state.invalid if entry["to"] != ADMIN] == []
    rows = Delivery.objects.filter(edition=EDITION)
    assert rows.count() == 40 and set(rows.values_list("status", flat=True)) == {Delivery.Status.SENT}
    accepted = {message.to.lower(): message.message_id for message in esp.accepted}
    for email, message_id in rows.values_list("subscriber__email", "esp_message_id"):
        assert accepted[email] == message_id
