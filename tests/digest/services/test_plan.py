"""Planning that always finishes: batches that commit on their own, resumption by
recover_runs after the database went away, and later runs adopting what a failed
run left unsent. Every due reader ends with exactly one delivery."""

from collections import Counter
from datetime import timedelta

import pytest
from django.conf import settings
from django.core import mail
from django.db import DatabaseError, connection
from django.test import TestCase
from django.utils import timezone

from digest.models import Delivery, DigestRun
from digest.services import plan as plan_module
from digest.services.plan import deliveries_plan
from digest.services.runs import MAX_PLAN_ATTEMPTS, digest_run_start, digest_runs_recover
from subscribers.models import Subscriber
from tests.digest.builders import EDITION, make_paper, make_reader

REAL_PLAN_BATCH = plan_module.plan_batch


@pytest.fixture
def night(settings, monkeypatch):
    settings.SITE_URL = "https://digest.example.org"
    settings.ADMINS = [("Ops", "ops@example.org")]
    settings.DIGEST_SEND_BACKOFF = 0.0
    monkeypatch.setattr(plan_module, "PLAN_BATCH_SIZE", 7)
    return settings


def seed(count: int) -> list[str]:
    make_paper(1, topics={"reasoning": 0.9}, upvotes=30)
    make_paper(2, topics={"agents": 0.8}, upvotes=12)
    topics = (["reasoning"], ["agents"], ["reasoning", "agents"])
    return [make_reader(f"r{i}@example.org", topics[i % 3]).email for i in range(count)]


def admin_mail(subject_part: str) -> list:
    return [m for m in mail.outbox if m.to == ["ops@example.org"] and subject_part in m.subject]


def digests() -> Counter:
    return Counter(m.to[0] for m in mail.outbox if m.to != ["ops@example.org"])


def assert_every_reader_one_digest(emails: list[str]) -> None:
    rows = Counter(Delivery.objects.filter(edition=EDITION).values_list("subscriber__email", flat=True))
    assert set(rows) == set(emails) and set(rows.values()) == {1}, rows
    assert set(Delivery.objects.filter(edition=EDITION).values_list("status", flat=True)) == {"sent"}
    sent = digests()
    assert set(sent) == set(emails) and set(sent.values()) == {1}, sent


def fail_after(monkeypatch, batches: int, fault) -> list[int]:
    """Let `batches` planning batches through, then call `fault` before every further one."""
    real = plan_module.plan_batch
    done: list[int] = []

    def plan_batch(*, run, subscriber_ids):
        if len(done) >= batches:
            fault()
        real(run=run, subscriber_ids=subscriber_ids)
        done.append(len(subscriber_ids))

    monkeypatch.setattr(plan_module, "plan_batch", plan_batch)
    return done


def start_with_planning_cut(monkeypatch, *, after: int, fault=None) -> DigestRun:
    """Start the night with planning cut off after `after` batches (the database is lost,
    unless another `fault` is given), then give the planner back as a restored database would."""
    fail_after(monkeypatch, after, fault or database_lost)
    run = digest_run_start(edition=EDITION, fetch=False)
    monkeypatch.setattr(plan_module, "plan_batch", REAL_PLAN_BATCH)
    return run


def quiet_for_recovery() -> None:
    """Make every planning run's progress marker count as gone quiet (older than
    DIGEST_CLAIM_TIMEOUT, which stays as it is: send tasks lease rows for that long)."""
    DigestRun.objects.filter(status=DigestRun.Status.PLANNING).update(
        planned_at=timezone.now() - timedelta(seconds=settings.DIGEST_CLAIM_TIMEOUT + 1)
    )


def database_lost() -> None:
    raise DatabaseError("server closed the connection unexpectedly")


@pytest.mark.django_db
def test_planning_again_plans_nothing_new(night):
    seed(20)
    run = DigestRun.objects.create(edition=EDITION, status=DigestRun.Status.PLANNING)
    assert deliveries_plan(run=run) == 20
    assert deliveries_plan(run=run) == 20
    assert Delivery.objects.count() == 20


@pytest.mark.django_db
def test_planning_interrupted_stays_in_planning_and_tells_the_admins(night, monkeypatch):
    seed(30)
    fail_after(monkeypatch, 2, database_lost)
    run = digest_run_start(edition=EDITION, fetch=False)
    assert run.status == DigestRun.Status.PLANNING
    assert Delivery.objects.filter(run=run).count() == 14  # two batches of 7 committed
    assert len(admin_mail("planning interrupted")) == 1
    assert "planning interrupted" in DigestRun.objects.get(id=run.id).errors[-1]


@pytest.mark.django_db
def test_recover_leaves_a_run_alone_while_its_planner_makes_progress(night, monkeypatch):
    seed(10)
    run = start_with_planning_cut(monkeypatch, after=1)
    night.DIGEST_CLAIM_TIMEOUT = 300  # the marker moved a moment ago
    with TestCase.captureOnCommitCallbacks(execute=True):
        assert digest_runs_recover() == 0
    assert DigestRun.objects.get(id=run.id).status == DigestRun.Status.PLANNING


@pytest.mark.django_db
def test_recover_finishes_planning_and_sends_every_due_reader_once(night, monkeypatch):
    emails = seed(30)
    run = start_with_planning_cut(monkeypatch, after=2)
    quiet_for_recovery()
    with TestCase.captureOnCommitCallbacks(execute=True):
        assert digest_runs_recover() >= 1
    run.refresh_from_db()
    assert run.status == DigestRun.Status.SUCCEEDED
    assert run.due_count == 30 and run.sent_count == 30 and run.plan_attempts == 1
    assert_every_reader_one_digest(emails)


@pytest.mark.django_db
def test_a_run_that_cannot_finish_planning_is_failed_and_the_admins_mailed(night, monkeypatch):
    seed(20)
    fail_after(monkeypatch, 1, database_lost)
    run = digest_run_start(edition=EDITION, fetch=False)
    for _ in range(MAX_PLAN_ATTEMPTS):
        quiet_for_recovery()
        digest_runs_recover()
        assert DigestRun.objects.get(id=run.id).status == DigestRun.Status.PLANNING
    quiet_for_recovery()
    digest_runs_recover()
    run.refresh_from_db()
    assert run.status == DigestRun.Status.FAILED
    assert run.plan_attempts == MAX_PLAN_ATTEMPTS
    assert len(admin_mail("failed")) == 1
    assert "Planning could not be finished" in run.errors[-1]


@pytest.mark.django_db
def test_running_the_night_again_adopts_what_a_failed_run_left_unsent(night, monkeypatch):
    emails = seed(25)
    first = start_with_planning_cut(monkeypatch, after=2)
    DigestRun.objects.filter(id=first.id).update(status=DigestRun.Status.FAILED)
    left = Delivery.objects.filter(run=first).count()
    assert 0 < left < 25
    with TestCase.captureOnCommitCallbacks(execute=True):
        from digest.tasks import nightly_run

        second = DigestRun.objects.get(id=nightly_run(EDITION.isoformat(), fetch=False))
    second.refresh_from_db()
    assert second.due_count == 25
    assert second.sent_count == 25
    assert not Delivery.objects.filter(run=first).exists()
    assert_every_reader_one_digest(emails)


@pytest.mark.django_db
def test_running_the_night_again_takes_over_a_run_whose_planner_died(night, monkeypatch):
    emails = seed(25)
    stuck = start_with_planning_cut(monkeypatch, after=2)
    assert stuck.status == DigestRun.Status.PLANNING
    quiet_for_recovery()
    with TestCase.captureOnCommitCallbacks(execute=True):
        from digest.tasks import nightly_run

        second = DigestRun.objects.get(id=nightly_run(EDITION.isoformat(), fetch=False))
    second.refresh_from_db()
    stuck.refresh_from_db()
    assert (second.due_count, second.sent_count) == (25, 25)
    assert stuck.status == DigestRun.Status.FAILED and f"run {second.id} took over" in stuck.errors[-1]
    assert_every_reader_one_digest(emails)
    # Recovery later finds nothing to resume.
    with TestCase.captureOnCommitCallbacks(execute=True):
        assert digest_runs_recover() == 0


@pytest.mark.django_db
def test_a_new_run_never_takes_rows_of_a_live_planner(night, monkeypatch):
    seed(10)
    alive = start_with_planning_cut(monkeypatch, after=1)  # its marker moved a moment ago
    second = DigestRun.objects.create(edition=EDITION, status=DigestRun.Status.PLANNING)
    assert deliveries_plan(run=second) == 3
    assert Delivery.objects.filter(run=alive).count() == 7
    assert DigestRun.objects.get(id=alive.id).status == DigestRun.Status.PLANNING


@pytest.mark.django_db
def test_a_new_run_never_takes_rows_of_a_run_still_sending(night):
    seed(5)
    first = DigestRun.objects.create(edition=EDITION, status=DigestRun.Status.PLANNING)
    deliveries_plan(run=first)
    DigestRun.objects.filter(id=first.id).update(status=DigestRun.Status.SENDING)
    second = DigestRun.objects.create(edition=EDITION, status=DigestRun.Status.PLANNING)
    assert deliveries_plan(run=second) == 0
    assert Delivery.objects.filter(run=first).count() == 5


@pytest.mark.django_db
def test_sent_rows_of_a_failed_run_are_never_adopted(night):
    seed(4)
    first = DigestRun.objects.create(edition=EDITION, status=DigestRun.Status.PLANNING)
    deliveries_plan(run=first)
    sent = Delivery.objects.filter(run=first).order_by("id")[:2]
    Delivery.objects.filter(id__in=[d.id for d in sent]).update(status=Delivery.Status.SENT)
    Delivery.objects.filter(run=first, status=Delivery.Status.PLANNED).update(
        status=Delivery.Status.FAILED, error="recipient refused: inactive"
    )
    DigestRun.objects.filter(id=first.id).update(status=DigestRun.Status.FAILED)
    second = DigestRun.objects.create(edition=EDITION, status=DigestRun.Status.PLANNING)
    assert deliveries_plan(run=second) == 0


# --- The real thing: PostgreSQL drops the planner's connection -------------------------


def terminate_backend(pid: int) -> None:
    """From another connection, as an operator or a failover would."""
    import psycopg

    from tests.support import test_database_url

    with psycopg.connect(test_database_url(), autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [pid])


@pytest.mark.services
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_postgresql_lost_mid_plan_then_every_due_reader_gets_exactly_one_digest(
    night, monkeypatch, postgres_required
):
    emails = seed(60)
    connection.ensure_connection()
    pid = connection.connection.info.backend_pid
    run = start_with_planning_cut(monkeypatch, after=3, fault=lambda: terminate_backend(pid))
    assert run.status == DigestRun.Status.PLANNING
    assert connection.connection is None or connection.connection.info.backend_pid != pid
    planned = Delivery.objects.filter(run=run).count()
    assert planned == 21, "three batches of 7 committed before the connection was killed"
    assert len(admin_mail("planning interrupted")) == 1

    quiet_for_recovery()
    assert digest_runs_recover() >= 1  # autocommit: send tasks run (eagerly) as it commits
    run.refresh_from_db()
    assert run.status == DigestRun.Status.SUCCEEDED, run.errors
    assert (run.due_count, run.sent_count) == (60, 60)
    assert_every_reader_one_digest(emails)


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_the_night_queues_each_batchs_chunks_as_it_is_planned_and_every_row_once(night, monkeypatch):
    from digest.tasks import send_chunk

    night.DIGEST_CHUNK_SIZE = 4
    emails = seed(17)  # three planning batches of at most 7
    queued: list[tuple[int, int, str, int]] = []

    def record(run_id, first, last):
        planned = Delivery.objects.filter(run_id=run_id).count()
        queued.append((first, last, DigestRun.objects.get(id=run_id).status, planned))

    monkeypatch.setattr(send_chunk, "delay", record)
    # Outside a test transaction each batch commits, and its tasks are queued, at once.
    run = digest_run_start(edition=EDITION, fetch=False, dispatch=True)
    assert run.status == DigestRun.Status.SENDING and run.due_count == 17
    # The first batch's chunks went out while the rest was still to be planned.
    assert queued[0][2] == DigestRun.Status.PLANNING and queued[0][3] < 17
    ids = sorted(Delivery.objects.filter(run=run).values_list("id", flat=True))
    covered = [i for first, last, *_ in queued for i in ids if first <= i <= last]
    assert sorted(covered) == ids  # every row in exactly one queued range
    assert {row.subscriber.email for row in Delivery.objects.filter(run=run)} == set(emails)


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_night_whose_chunks_all_finished_during_planning_is_closed(night):
    night.DIGEST_CHUNK_SIZE = 4
    emails = seed(7)  # one full batch: its chunks go, and finish, before planning ends
    # In-process tasks: each batch's chunks are sent before the next batch is planned.
    run = digest_run_start(edition=EDITION, fetch=False, dispatch=True)
    run.refresh_from_db()
    assert run.status == DigestRun.Status.SUCCEEDED
    assert_every_reader_one_digest(emails)


@pytest.mark.parametrize(
    ("rows", "size", "expected"),
    [
        (3695, 2000, [1848, 1847]),
        (4000, 2000, [2000, 2000]),
        (4001, 2000, [1334, 1334, 1333]),
        (7, 3, [3, 2, 2]),
        (1, 2000, [1]),
        (0, 2000, []),
    ],
)
def test_chunks_are_as_even_as_the_chunk_size_allows(rows, size, expected):
    from digest.services.plan import chunk_ranges

    ids = list(range(10, 10 + 3 * rows, 3))  # sorted, with gaps, as delivery ids are
    ranges = chunk_ranges(iter(ids), size)
    assert [sum(1 for i in ids if first <= i <= last) for first, last in ranges] == expected
    assert [i for first, last in ranges for i in ids if first <= i <= last] == ids


@pytest.mark.django_db
def test_rows_planned_in_one_statement_are_the_rows_the_orm_would_create(night, postgres_required):
    emails = seed(5)
    run = DigestRun.objects.create(edition=EDITION, status=DigestRun.Status.PLANNING)
    ids = list(Subscriber.objects.filter(email__in=emails).values_list("id", flat=True))
    plan_module.plan_batch(run=run, subscriber_ids=ids[:3])
    plan_module.plan_batch(run=run, subscriber_ids=ids)  # the first three again: skipped, not doubled
    assert connection.vendor == "postgresql"
    reference = Delivery.objects.create(subscriber_id=ids[0], edition=EDITION - timedelta(days=1), run=run)
    skip = {"id", "subscriber", "edition", "created_at", "updated_at"}
    fields = [f.attname for f in Delivery._meta.concrete_fields if f.name not in skip]
    planned = Delivery.objects.filter(edition=EDITION).order_by("subscriber_id")
    assert sorted(planned.values_list("subscriber_id", flat=True)) == sorted(ids)
    expected = {name: getattr(reference, name) for name in fields}
    for row in planned:
        assert {name: getattr(row, name) for name in fields} == expected
        assert row.created_at and row.updated_at and row.created_at <= timezone.now()
