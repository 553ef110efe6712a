"""The nightly run: fetch and ingest, plan, then track sending until done."""

import functools
import logging
from collections.abc import Sequence
from datetime import date, timedelta

from django.conf import settings
from django.core.mail import mail_admins
from django.db import DatabaseError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from config.logging import log_context_bind
from digest.models import Delivery, DigestRun
from digest.services.ingest import papers_ingest
from digest.services.plan import RUN_TIMED_OUT, deliveries_plan, pending_ranges
from digest.services.retention import deliveries_retention_guard
from digest.sources import arxiv, fetch_sources
from digest.sources.base import SOURCE_ARXIV
from subscribers.selectors import followed_arxiv_categories

logger = logging.getLogger(__name__)

UNFINISHED = (Delivery.Status.PLANNED, Delivery.Status.SENDING, Delivery.Status.INFLIGHT)
# Times recovery tries to finish a run's planning before giving up on it.
MAX_PLAN_ATTEMPTS = 3


def notify_admins(subject: str, message: str) -> None:
    """Tell the people in ADMIN_EMAILS; never let a mail problem hide the original one."""
    try:
        mail_admins(subject, message, fail_silently=True)
    except Exception:
        logger.exception("could not notify admins: %s", subject)


def digest_run_start(
    *,
    edition: date,
    fetch: bool = True,
    source: str | None = None,
    only_email: str | None = None,
    run_id: int | None = None,
    dispatch: bool = False,
) -> DigestRun:
    """Fetch yesterday's papers from every source (DIGEST_SOURCES, or just `source`)
    and plan today's deliveries, on a new run row or on the one `digest_run_launch` created.

    A source that fails is named in the run's errors and mailed to the admins,
    and the run sends what the others gave. When every source fails, or any
    does under DIGEST_SOURCES_REQUIRE_ALL, the run stops here: nothing is
    stored or planned, so nothing stale goes out as new. When the database
    fails while planning, the run stays in planning with what it has written
    so far; the admins are told, and `recover_runs` plans the rest and sends
    the run once the database answers again.

    With `dispatch`, send tasks are queued as planning goes, each batch's
    chunks as soon as the batch commits, so workers send while the rest is
    planned; the caller then has nothing left to dispatch.
    """
    deliveries_retention_guard(edition=edition)
    if run_id:
        run = DigestRun.objects.get(id=run_id)
    else:
        run = DigestRun.objects.create(edition=edition, only_email=only_email or "")
    log_context_bind(run_id=run.pk)
    if fetch and not papers_fetch_for_run(run=run, sources=[source] if source else settings.DIGEST_SOURCES):
        return run
    run.status = DigestRun.Status.PLANNING
    run.planned_at = timezone.now()
    run.save(update_fields=["papers_count", "errors", "status", "planned_at"])
    try:
        digest_run_plan(run=run, dispatch=dispatch)
    except DatabaseError as exc:
        _planning_interrupted(run=run, exc=exc)
    return run


def papers_fetch_for_run(*, run: DigestRun, sources: Sequence[str]) -> bool:
    """The run's fetch step: every source for the day before the edition, one ingest of all
    their records (merged by arXiv id). False when the run failed and must stop."""
    day = run.edition - timedelta(days=1)
    categories, left_out = arxiv.categories_to_fetch(
        settings.ARXIV_CATEGORIES, followed_arxiv_categories(), limit=settings.ARXIV_MAX_CATEGORIES
    )
    harvest = fetch_sources(day, sources, arxiv_categories=categories)
    failed = [f"Source {exc.source} failed for {day}: {exc}" for exc in harvest.failures]
    if failed and (settings.DIGEST_SOURCES_REQUIRE_ALL or not harvest.answered):
        reason = "every source failed" if not harvest.answered else "DIGEST_SOURCES_REQUIRE_ALL is on"
        digest_run_fail(run=run, error=f"Fetching papers for {day} failed ({reason}): {'; '.join(failed)}")
        return False
    result = papers_ingest(records=harvest.records)
    run.papers_count = result.created + result.updated
    notes = [
        f"nothing new from {name} on {day}" for name, (_, count) in harvest.answered.items() if not count
    ]
    notes += [
        f"{name} answered through {used}" for name, (used, _) in harvest.answered.items() if used != name
    ]
    if left_out and SOURCE_ARXIV in harvest.answered:
        notes.append(f"arXiv categories over ARXIV_MAX_CATEGORIES not fetched: {', '.join(left_out)}")
    run.errors = [*failed, *(f"note: {note}" for note in notes)]
    if failed:
        answered = ", ".join(harvest.answered)
        notify_admins(
            f"Digest run for {run.edition}: {len(failed)} source{'s' if len(failed) > 1 else ''} failed",
            "\n".join(failed) + f"\n\nThe run goes on with what {answered} gave; the papers of the failed "
            "source are missing from tonight's digests. Set DIGEST_SOURCES_REQUIRE_ALL=true to stop "
            "the run instead.",
        )
    return True


class _QueueAsPlanned:
    """Queues the send tasks of a run's rows as planning commits them, each
    row once: `after_id` is the last row already queued."""

    def __init__(self, run: DigestRun):
        self.run = run
        self.after_id = 0

    def __call__(self) -> None:
        ranges = pending_ranges(run=self.run, after_id=self.after_id)
        if ranges:
            send_tasks_queue(run_id=self.run.pk, ranges=ranges)
            self.after_id = ranges[-1][1]


def digest_run_plan(*, run: DigestRun, dispatch: bool = False) -> bool:
    """Plan (or finish planning) a run and open it for sending; with `dispatch`,
    queue its send tasks as it goes (see digest_run_start). Returns False when
    another planner got there first."""
    queue = _QueueAsPlanned(run) if dispatch else None
    run.due_count = deliveries_plan(run=run, on_batch=queue)
    opened = DigestRun.objects.filter(id=run.pk, status=DigestRun.Status.PLANNING).update(
        status=DigestRun.Status.SENDING, due_count=run.due_count, planned_at=timezone.now()
    )
    if opened and queue is not None:
        queue()
        # Chunks that finished while the run was still planning could not close it.
        digest_run_finish_if_done(run_id=run.pk)
    run.refresh_from_db()
    logger.info(
        "run %s for %s: %s papers, %s deliveries planned",
        run.pk,
        run.edition,
        run.papers_count,
        run.due_count,
    )
    return bool(opened)


def _drop_broken_connection() -> None:
    """Close a connection the database dropped, so the next query opens a fresh one."""
    if not connection.in_atomic_block:
        connection.close_if_unusable_or_obsolete()


def _planning_interrupted(*, run: DigestRun, exc: Exception) -> None:
    logger.exception("run %s for %s: planning interrupted", run.pk, run.edition)
    _drop_broken_connection()
    try:
        DigestRun.objects.filter(id=run.pk).update(errors=[*run.errors, f"planning interrupted: {exc}"[:500]])
    except DatabaseError:
        _drop_broken_connection()
    notify_admins(
        f"Digest run for {run.edition}: planning interrupted",
        f"Planning the run failed part-way: {exc}\n\nThe rows planned so far are kept. "
        f"recover_runs (every {settings.DIGEST_RECOVER_EVERY}s) plans the rest and sends the run once "
        "the database answers; you will get another message if it cannot.",
    )


def digest_run_fail(*, run: DigestRun, error: str) -> None:
    run.status = DigestRun.Status.FAILED
    run.finished_at = timezone.now()
    run.errors = [*run.errors, error]
    run.save(update_fields=["status", "finished_at", "errors"])
    logger.error("run %s for %s failed: %s", run.pk, run.edition, error)
    notify_admins(
        f"Digest run for {run.edition} failed",
        f"{error}\n\nNo digests were sent for this run. Fix the cause and start the run again from the admin "
        f"or with: python manage.py run_digest --date {run.edition.isoformat()}",
    )


def digest_run_finish_if_done(*, run_id: int) -> bool:
    """Close the run once none of its deliveries is left to send."""
    if Delivery.objects.filter(run_id=run_id, status__in=UNFINISHED).exists():
        return False
    closed = DigestRun.objects.filter(id=run_id, status=DigestRun.Status.SENDING).update(
        status=DigestRun.Status.SUCCEEDED, finished_at=timezone.now()
    )
    if closed:
        run = DigestRun.objects.get(id=run_id)
        logger.info(
            "run %s for %s done: %s sent, %s empty, %s failed",
            run.pk,
            run.edition,
            run.sent_count,
            run.empty_count,
            run.failed_count,
        )
        if run.failed_count:
            notify_admins(
                f"Digest run for {run.edition}: {run.failed_count} deliveries failed",
                f"{run.sent_count} sent, {run.empty_count} empty, {run.failed_count} failed. "
                "The failed deliveries and their reasons are listed in the admin.",
            )
    return True


def digest_runs_to_recover() -> list[tuple[int, list[tuple[int, int]]]]:
    """Runs still sending whose work has stalled, with the ranges to queue again.

    Chunk tasks can be lost (a broker restarted without persistence, a worker
    killed before acknowledging). A run whose count of unfinished deliveries has
    not moved since the previous check gets its planned and stale rows queued
    again; queuing a range twice is harmless because rows are claimed atomically.
    """
    to_queue = []
    for run in DigestRun.objects.filter(status=DigestRun.Status.SENDING):
        if digest_run_finish_if_done(run_id=run.pk):
            continue
        age = (timezone.now() - run.started_at).total_seconds()
        if age > settings.DIGEST_RUN_MAX_SECONDS:
            # A row still in flight may be at the ESP: uncertain, not failed.
            unknown = Delivery.objects.filter(run=run, status=Delivery.Status.INFLIGHT).update(
                status=Delivery.Status.UNCERTAIN, error="run timed out while the ESP had it", claim_token=""
            )
            stuck = Delivery.objects.filter(run=run, status__in=UNFINISHED).update(
                status=Delivery.Status.FAILED, error=RUN_TIMED_OUT, claim_token=""
            )
            DigestRun.objects.filter(id=run.pk).update(
                failed_count=F("failed_count") + stuck, uncertain_count=F("uncertain_count") + unknown
            )
            stuck += unknown
            digest_run_fail(run=run, error=f"Run timed out after {int(age)}s with {stuck} deliveries unsent.")
            continue
        remaining = Delivery.objects.filter(run=run, status__in=UNFINISHED).count()
        stalled = run.remaining_at_check is not None and remaining >= run.remaining_at_check
        DigestRun.objects.filter(id=run.pk).update(remaining_at_check=remaining)
        stale_claims = Delivery.objects.filter(
            Q(run=run, status__in=(Delivery.Status.SENDING, Delivery.Status.INFLIGHT)),
            claimed_at__lt=timezone.now() - timedelta(seconds=settings.DIGEST_CLAIM_TIMEOUT),
        ).exists()
        if stalled or stale_claims:
            to_queue.append((run.pk, pending_ranges(run=run)))
    return to_queue


def send_tasks_queue(*, run_id: int, ranges: list[tuple[int, int]]) -> int:
    """The one place send tasks are queued: once the surrounding transaction
    commits, so a worker never looks for rows it cannot see yet."""
    from digest.tasks import send_chunk

    for first, last in ranges:
        transaction.on_commit(functools.partial(send_chunk.delay, run_id, first, last))
    return len(ranges)


def digest_run_dispatch(*, run_id: int) -> int:
    """Queue one send task per range of unsent deliveries; close a run with nothing to send."""
    ranges = pending_ranges(run=DigestRun.objects.get(id=run_id))
    if not ranges:
        digest_run_finish_if_done(run_id=run_id)
    return send_tasks_queue(run_id=run_id, ranges=ranges)


def digest_runs_recover() -> int:
    """Finish runs whose planning stopped, queue again the chunks of runs that
    stopped sending; returns tasks queued."""
    queued = digest_runs_resume_planning()
    return queued + sum(
        send_tasks_queue(run_id=run_id, ranges=ranges) for run_id, ranges in digest_runs_to_recover()
    )


def digest_runs_resume_planning() -> int:
    """Runs stuck before sending: a planner that lost its database or its
    process leaves the run in planning with a quiet progress marker. Each is
    planned to the end (planning is idempotent) and dispatched; one that keeps
    failing, or has run too long, is failed and the admins are mailed. Returns
    send tasks queued."""
    now = timezone.now()
    quiet = now - timedelta(seconds=settings.DIGEST_CLAIM_TIMEOUT)
    too_old = now - timedelta(seconds=settings.DIGEST_RUN_MAX_SECONDS)
    queued = 0
    for run in DigestRun.objects.filter(status=DigestRun.Status.RUNNING, started_at__lt=too_old):
        digest_run_fail(run=run, error="The run never finished fetching papers (its worker was lost).")
    stuck = DigestRun.objects.filter(status=DigestRun.Status.PLANNING).filter(
        Q(planned_at__lt=quiet) | Q(planned_at__isnull=True)
    )
    for run in stuck:
        if run.started_at < too_old or run.plan_attempts >= MAX_PLAN_ATTEMPTS:
            digest_run_fail(
                run=run,
                error=f"Planning could not be finished after {run.plan_attempts} attempts to resume it; "
                "the rows it planned are taken over by the next run of this edition.",
            )
            continue
        # Take the run with a conditional update, so two recoverers never both resume it.
        taken = DigestRun.objects.filter(id=run.pk, status=run.status, planned_at=run.planned_at).update(
            planned_at=now, plan_attempts=F("plan_attempts") + 1
        )
        if not taken:
            continue
        run.refresh_from_db()
        logger.warning(
            "run %s for %s: resuming planning (attempt %s)", run.pk, run.edition, run.plan_attempts
        )
        try:
            if digest_run_plan(run=run):
                queued += digest_run_dispatch(run_id=run.pk)
        except DatabaseError as exc:
            _planning_interrupted(run=run, exc=exc)
    return queued


def deliveries_resend(*, delivery_ids: list[int]) -> int:
    """Put failed deliveries back in the queue; returns how many were queued."""
    with transaction.atomic():
        failed = list(
            Delivery.objects.select_for_update()
            .filter(id__in=delivery_ids, status=Delivery.Status.FAILED, run__isnull=False)
            .values_list("id", "run_id")
        )
        ids = [delivery_id for delivery_id, _ in failed]
        Delivery.objects.filter(id__in=ids).update(
            status=Delivery.Status.PLANNED, attempts=0, error="", claim_token="", claimed_at=None
        )
        for run_id in {run_id for _, run_id in failed}:
            count = sum(1 for _, rid in failed if rid == run_id)
            DigestRun.objects.filter(id=run_id).update(
                failed_count=F("failed_count") - count, status=DigestRun.Status.SENDING, finished_at=None
            )
        for delivery_id, run_id in failed:
            send_tasks_queue(run_id=run_id, ranges=[(delivery_id, delivery_id)])
    return len(failed)


def digest_run_launch(*, edition: date, fetch: bool = True) -> DigestRun:
    """Start a run from the admin: its row now, so the page can follow it, and
    the work after the response (a Celery task, or a thread without a broker)."""
    from digest.background import task_start_after_commit
    from digest.tasks import nightly_run

    run = DigestRun.objects.create(edition=edition)
    run_id = run.pk
    task_start_after_commit(
        nightly_run,
        edition.isoformat(),
        fetch,
        None,  # every source in DIGEST_SOURCES, as the nightly run
        run_id,
        on_error=lambda exc: digest_run_fail_unexpected(run_id=run_id, error=exc),
    )
    return run


def digest_run_fail_unexpected(*, run_id: int, error: BaseException) -> None:
    """Mark a run failed when its task crashed while fetching. A run that got as far as
    planning or sending is left to `recover_runs`, which finishes what it started."""
    run = DigestRun.objects.filter(id=run_id, status=DigestRun.Status.RUNNING).first()
    if run is not None:
        digest_run_fail(run=run, error=f"The run stopped with an error: {type(error).__name__}: {error}")
