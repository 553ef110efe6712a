import socket
from typing import Any

from celery import Task, shared_task

from config.logging import log_context
from digest.health import check_database


@shared_task(name="digest.healthcheck")
def healthcheck() -> dict[str, str]:
    """Prove a worker is alive and can reach the database; returns who answered."""
    check_database()
    return {"worker": socket.gethostname(), "database": "ok"}


@shared_task(name="digest.fetch_papers")
def fetch_papers_task(day_iso: str, source: str = "hf") -> dict[str, object]:
    """Fetch and ingest one day's papers; a source failure is mailed to admins and re-raised.

    Nothing is written when the source fails (the ingest is one transaction).
    """
    import logging
    from datetime import date

    from django.core.mail import mail_admins

    from digest.services import papers_fetch
    from digest.sources import SourceError

    day = date.fromisoformat(day_iso)
    try:
        result = papers_fetch(day=day, source=source)
    except SourceError as exc:
        logging.getLogger(__name__).error("Fetching papers for %s failed: %s", day_iso, exc)
        mail_admins(
            f"Paper fetch for {day_iso} failed ({exc.source})",
            f"Nothing was stored for {day_iso}.\n\n"
            f"Source: {exc.source}\nURL: {exc.url}\nProblem: {exc.detail}\n",
            fail_silently=True,
        )
        raise
    return {
        "day": day_iso,
        "source": result.source,
        "created": result.created,
        "updated": result.updated,
        "unchanged": result.unchanged,
    }


# --- The nightly digest ---------------------------------------------------------------
#
# Tasks take ids and ISO dates, never model objects, and are safe to run twice:
# planning is guarded by a unique constraint and sending by atomic row claims.


@shared_task(name="digest.nightly_run")
def nightly_run(
    edition_iso: str | None = None, fetch: bool = True, source: str | None = None, run_id: int | None = None
) -> int:
    """Fetch (every source in DIGEST_SOURCES, or just `source`), plan and fan out one edition,
    on the run row `run_id` when an admin started it. Returns the DigestRun id."""
    from datetime import date

    from django.utils import timezone

    from digest.services.runs import digest_run_fail_unexpected, digest_run_start

    edition = date.fromisoformat(edition_iso) if edition_iso else timezone.now().date()
    # digest_run_start binds the run's id, so the fetch, the planning and the
    # dispatch all log it.
    with log_context():
        try:
            # Send tasks are queued as planning goes; a run left in planning
            # (its database went away) is finished by recover_runs.
            run = digest_run_start(edition=edition, fetch=fetch, source=source, run_id=run_id, dispatch=True)
        except Exception as exc:
            if run_id is not None:  # an admin is watching this row: never leave it "running"
                digest_run_fail_unexpected(run_id=run_id, error=exc)
            raise
    return run.pk


@shared_task(name="digest.send_chunk", bind=True, acks_late=True, max_retries=None)
def send_chunk(self: Task[Any, Any], run_id: int, id_from: int, id_to: int) -> dict[str, Any]:
    """Send the deliveries of one id range; retried with backoff while the ESP is
    unwell, and at once when the soft time limit stopped it part-way."""
    from digest.services.runs import digest_run_finish_if_done
    from digest.services.send import (
        deliveries_send_chunk,
        deliveries_send_chunk_blocking,
        earlier_lease_wait,
        new_claim_token,
        retry_countdown,
    )

    with log_context(run_id=run_id, chunk=f"{id_from}-{id_to}"):
        claim_token = new_claim_token(self.request.id)
        if self.request.is_eager:
            # In-process there is no broker to hold a retry: wait in place.
            result = deliveries_send_chunk_blocking(
                run_id=run_id, id_from=id_from, id_to=id_to, claim_token=claim_token
            )
        else:
            result = deliveries_send_chunk(
                run_id=run_id, id_from=id_from, id_to=id_to, claim_token=claim_token
            )
            if not result.claimed and self.request.id:
                # Handed out again after a worker died: the rows are still leased to
                # the execution that died; take them over once that lease runs out.
                wait = earlier_lease_wait(
                    run_id=run_id, id_from=id_from, id_to=id_to, task_id=self.request.id
                )
                if wait is not None:
                    raise self.retry(countdown=wait)
            if result.deferred:
                countdown = (
                    0.0
                    if result.interrupted and not result.errors
                    else retry_countdown(retry_after=result.retry_after, retries=self.request.retries)
                )
                raise self.retry(countdown=countdown)
        digest_run_finish_if_done(run_id=run_id)
        return {
            "claimed": result.claimed,
            "sent": result.sent,
            "empty": result.empty,
            "failed": result.failed,
            "uncertain": result.uncertain,
            "in_flight_max": result.in_flight_max,
            "in_flight_avg": round(result.in_flight_avg, 1),
        }


@shared_task(name="digest.recover_runs")
def recover_runs() -> int:
    """Periodic: finish runs stuck in planning, queue again the chunks of runs that stopped sending."""
    from digest.services.runs import digest_runs_recover

    return digest_runs_recover()


@shared_task(name="digest.corpus_stats_rebuild")
def corpus_stats_rebuild_task() -> int:
    from digest.services.corpus import corpus_stats_rebuild

    return corpus_stats_rebuild()


@shared_task(name="digest.reader_model_fit")
def reader_model_fit_task(subscriber_id: int) -> bool:
    from digest.services.learning import reader_model_fit

    return reader_model_fit(subscriber_id=subscriber_id)


@shared_task(name="digest.purge_old_deliveries")
def purge_old_deliveries() -> int:
    """Periodic: roll up delivery rows past DIGEST_DELIVERY_RETENTION_DAYS, then delete them."""
    from digest.services.retention import deliveries_purge

    return deliveries_purge()
