"""Sending one chunk: claim rows, compose each reader's digest, hand it to the ESP, record the outcome."""

import logging
import time
from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.core.mail import get_connection
from django.db.models import F, Q
from django.utils import timezone

from digest.compose import DigestComposer, digest_message
from digest.models import Delivery, DigestRun
from digest.selectors import readers_for_deliveries
from digest.services.batch import batch_esp, send_in_batches
from digest.services.journal import journal_for
from digest.services.outcomes import ChunkResult, compose_recording_outcome, deliveries_record_outcomes
from mail.send import PermanentSendError, TransientSendError, send_one, settle_environment

logger = logging.getLogger(__name__)
Status = Delivery.Status


_composer_cache: dict[tuple, DigestComposer] = {}


def composer_for(run: DigestRun) -> DigestComposer:
    """One composer per run and worker process: papers are loaded once, not per chunk."""
    key = (run.pk, run.edition, run.started_at)
    composer = _composer_cache.get(key)
    if composer is None:
        _composer_cache.clear()
        composer = _composer_cache[key] = DigestComposer.for_edition(run.edition)
    return composer


def claim(*, run_id: int, id_from: int, id_to: int, claim_token: str) -> int:
    """Claim unsent rows in the range with one conditional UPDATE.

    A row is free when planned, when its claim has gone stale, or when it was
    claimed under this same token (the same task redelivered after its worker
    died). Under PostgreSQL's row locks two workers can never both win a row.
    """
    now = timezone.now()
    stale = now - timedelta(seconds=settings.DIGEST_CLAIM_TIMEOUT)
    return (
        Delivery.objects.filter(run_id=run_id, id__gte=id_from, id__lte=id_to)
        .filter(
            Q(status=Status.PLANNED)
            | Q(status=Status.SENDING, claim_token=claim_token)
            | Q(status=Status.SENDING, claimed_at__lt=stale)
        )
        .update(status=Status.SENDING, claim_token=claim_token, claimed_at=now, attempts=F("attempts") + 1)
    )


def deliveries_send_chunk(
    *,
    run_id: int,
    id_from: int,
    id_to: int,
    claim_token: str,
    connection=None,
    sleep: Callable[[float], None] = time.sleep,
) -> ChunkResult:
    """Claim, compose and send one chunk; every claimed row ends sent, empty,
    cancelled, failed, or back to planned for a later retry."""
    result = ChunkResult()
    extra = batch_esp()  # before claiming: a misconfiguration leaves the rows untouched
    run = DigestRun.objects.get(id=run_id)
    result.claimed = claim(run_id=run_id, id_from=id_from, id_to=id_to, claim_token=claim_token)
    if not result.claimed:
        return result
    rows = list(
        Delivery.objects.filter(run_id=run_id, claim_token=claim_token, status=Status.SENDING)
        .order_by("id")
        .values_list("id", "subscriber_id", "attempts")
    )
    journal = journal_for(run.edition)
    already = journal.recorded([row[0] for row in rows])
    readers, inactive = readers_for_deliveries(
        edition=run.edition, rows=[row for row in rows if row[0] not in already]
    )
    composer = composer_for(run)
    attempts = {row[0]: row[2] for row in rows}

    now = timezone.now()
    updates: dict[int, dict] = {}
    sent_subscribers: list[int] = []
    subscriber_of = {row[0]: row[1] for row in rows}
    for delivery_id, entry in already.items():
        sent_subscribers.append(subscriber_of[delivery_id])
        updates[delivery_id] = {
            "status": Status.SENT,
            "esp_message_id": entry.message_id,
            "sent_at": now,
            "subject": entry.subject,
            "paper_ids": entry.paper_ids,
        }
    for delivery_id, status in inactive.items():
        updates[delivery_id] = {"status": Status.CANCELLED, "error": f"subscriber is {status}"}

    own_connection = connection is None
    connection = connection or get_connection()
    stop_error: TransientSendError | None = None
    try:
        connection.open()
        settle_environment(connection)
        if extra is not None:
            stop_error = send_in_batches(
                rows=rows,
                readers=readers,
                composer=composer,
                run=run,
                connection=connection,
                esp=extra,
                journal=journal,
                updates=updates,
                sent_subscribers=sent_subscribers,
                sleep=sleep,
            )
            rows_left = ()
        else:
            rows_left = rows
        for delivery_id, subscriber_id, _ in rows_left:
            if delivery_id in updates:
                continue
            if stop_error is not None:
                break
            reader = readers[delivery_id]
            digest = compose_recording_outcome(
                delivery_id, updates, lambda r=reader, d=delivery_id: composer.message_parts(r, d)
            )
            if digest is None:
                continue
            message = digest_message(
                to=reader.email,
                subject=digest.subject,
                text=digest.text,
                html=digest.html,
                edition=run.edition,
                headers=digest.headers,
                metadata={"delivery_id": str(delivery_id)},
            )
            try:
                accepted = send_one(connection, message, sleep=sleep)
            except PermanentSendError as exc:
                updates[delivery_id] = {"status": Status.FAILED, "error": str(exc)}
                continue
            except TransientSendError as exc:
                stop_error = exc
                break
            paper_ids = list(digest.paper_ids)
            journal.record(delivery_id, accepted.message_id, digest.subject, paper_ids)
            updates[delivery_id] = {
                "status": Status.SENT,
                "esp_message_id": accepted.message_id,
                "sent_at": timezone.now(),
                "subject": digest.subject,
                "paper_ids": paper_ids,
                "error": "",
            }
            sent_subscribers.append(subscriber_id)
    finally:
        if own_connection:
            connection.close()
        # Whatever happens, rows this chunk did not finish go back to the pool
        # (or fail for good after too many tries), so nothing stays claimed.
        for delivery_id, _, _ in rows:
            if delivery_id in updates:
                continue
            if attempts[delivery_id] >= settings.DIGEST_MAX_ATTEMPTS:
                reason = str(stop_error) if stop_error else "interrupted"
                updates[delivery_id] = {
                    "status": Status.FAILED,
                    "error": f"gave up after {attempts[delivery_id]} attempts: {reason}",
                }
            else:
                updates[delivery_id] = {
                    "status": Status.PLANNED,
                    "claim_token": "",
                    "claimed_at": None,
                    "error": str(stop_error) if stop_error else "",
                }
        deliveries_record_outcomes(run=run, updates=updates, sent_subscribers=sent_subscribers, result=result)

    if stop_error is not None:
        result.retry_after = stop_error.retry_after
        result.errors.append(str(stop_error))
    return result


def retry_countdown(*, retry_after: float | None, retries: int) -> float:
    """Seconds before a deferred chunk tries again: the ESP's Retry-After, or
    exponential backoff, whichever is longer, capped so no task waits long."""
    backoff = settings.DIGEST_SEND_BACKOFF * 2 ** min(retries, 5)
    return min(max(retry_after or 0.0, backoff), 60.0)


def deliveries_send_chunk_blocking(
    *, run_id: int, id_from: int, id_to: int, claim_token: str, sleep: Callable[[float], None] = time.sleep
) -> ChunkResult:
    """Send a chunk in this process, waiting out transient ESP trouble in place.

    Used where no broker can hold a retry (the embedded mode, run_digest). Each
    pass counts an attempt on the rows it claims, so a dead ESP ends in failed
    deliveries after DIGEST_MAX_ATTEMPTS rather than looping for ever."""
    total = ChunkResult()
    retries = 0
    while True:
        result = deliveries_send_chunk(run_id=run_id, id_from=id_from, id_to=id_to, claim_token=claim_token)
        total.claimed = max(total.claimed, result.claimed)
        total.sent += result.sent
        total.empty += result.empty
        total.cancelled += result.cancelled
        total.failed += result.failed
        total.errors += result.errors
        if not result.deferred:
            return total
        sleep(retry_countdown(retry_after=result.retry_after, retries=retries))
        retries += 1
