"""Sending one chunk: lease rows, compose each reader's digest, keep many ESP calls
in flight, record the outcomes.

* Lease. A task claims its rows under a token of its own (one conditional
  UPDATE) and renews the lease (`claimed_at`) every third of
  DIGEST_CLAIM_TIMEOUT while it works. Only rows whose lease ran out, i.e.
  rows of a task that is gone, are taken over. Every later write is
  conditional on the token, so a task that lost its lease stops before its
  next call and writes nothing over rows it no longer owns.
* In flight. Before its ESP call a row is marked `inflight` (the same
  conditional UPDATE checks ownership). A row found in flight after a crash
  is never sent again blindly: the send journal, then the ESP's own message
  search (Postmark), then DIGEST_UNCERTAIN decide.
* Concurrency. The main thread composes while up to DIGEST_SEND_CONCURRENCY
  calls wait for the ESP in a pool of threads, each with its own connection
  kept open for the process's life. At most twice that many composed
  messages wait, so memory stays bounded.
* Rate. Every call first waits for its turn in the shared rate limit
  (mail/ratelimit.py); a 429 pauses all senders instead of spending attempts.
  Only rows whose call reached the ESP and failed count an attempt.
* Time limits. Celery's soft time limit stops composing and sending, waits for
  the calls already in flight, writes what was sent and releases the rest.
"""

import functools
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import timedelta
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.mail import get_connection
from django.db.models import Case, Q, Value, When
from django.utils import timezone

from digest.compose import DigestComposer, digest_message
from digest.metrics import esp_calls_flush
from digest.models import Delivery, DigestRun
from digest.selectors import readers_for_deliveries
from digest.services.batch import BatchESP, BatchJob, batch_esp, batch_jobs, send_batch_job
from digest.services.journal import JournalEntry, journal_for
from digest.services.outcomes import (
    ChunkResult,
    JobOutcome,
    Member,
    SendJob,
    accepted_update,
    compose_recording_outcome,
    deliveries_record_outcomes,
    uncertain_update,
)
from mail.ratelimit import RateLimiter, esp_rate_limiter
from mail.send import (
    LookupUnavailable,
    PermanentSendError,
    TransientSendError,
    UncertainSendError,
    find_sent,
    send_one,
    settle_environment,
)
from mail.transport import use_lean_session

logger = logging.getLogger(__name__)
Status = Delivery.Status
OWNED = (Status.SENDING, Status.INFLIGHT)


_composer_cache: dict[tuple, DigestComposer] = {}


def composer_for(run: DigestRun) -> DigestComposer:
    """One composer per run and worker process: papers are loaded once, not per chunk."""
    key = (run.pk, run.edition, run.started_at)
    composer = _composer_cache.get(key)
    if composer is None:
        _composer_cache.clear()
        composer = _composer_cache[key] = DigestComposer.for_edition(run.edition)
    return composer


def new_claim_token(task_id: str | None = None) -> str:
    """A token for one execution of a send task: a redelivered copy of the same
    task gets a token of its own, so it never mistakes a live copy's rows for its own."""
    suffix = uuid.uuid4().hex[:12]
    return f"{task_id}:{suffix}" if task_id else suffix


def claim(*, run_id: int, id_from: int, id_to: int, claim_token: str) -> int:
    """Lease unsent rows in the range with one conditional UPDATE.

    A row is free when planned, or when its lease ran out (the task holding it
    is gone). Under PostgreSQL's row locks two tasks can never both win a row.
    A row a gone task left in flight stays in flight under the new token, to be
    resolved before anything is sent. Claiming counts no attempt."""
    now = timezone.now()
    stale = now - timedelta(seconds=settings.DIGEST_CLAIM_TIMEOUT)
    return (
        Delivery.objects.filter(run_id=run_id, id__gte=id_from, id__lte=id_to)
        .filter(Q(status=Status.PLANNED) | Q(status__in=OWNED, claimed_at__lt=stale))
        .update(
            status=Case(
                When(status=Status.INFLIGHT, then=Value(Status.INFLIGHT)), default=Value(Status.SENDING)
            ),
            claim_token=claim_token,
            claimed_at=now,
        )
    )


def earlier_lease_wait(*, run_id: int, id_from: int, id_to: int, task_id: str) -> float | None:
    """Seconds until rows of this range held by an earlier execution of the same
    task (one Celery handed out again after its worker died) may be taken over;
    None when there are none. If that execution is in fact alive, it keeps
    renewing and the wait simply comes round again."""
    latest = (
        Delivery.objects.filter(
            run_id=run_id,
            id__gte=id_from,
            id__lte=id_to,
            status__in=OWNED,
            claim_token__startswith=f"{task_id}:",
        )
        .order_by("-claimed_at")
        .values_list("claimed_at", flat=True)
        .first()
    )
    if latest is None:
        return None
    expires = latest + timedelta(seconds=settings.DIGEST_CLAIM_TIMEOUT)
    return max(0.0, (expires - timezone.now()).total_seconds()) + 0.5


class Lease:
    """A task's hold on its rows, renewed as it goes."""

    def __init__(self, claim_token: str):
        self.token = claim_token
        self.seconds = float(settings.DIGEST_CLAIM_TIMEOUT)
        self.renewed_at = time.monotonic()
        self.lost = False

    def fresh(self) -> bool:
        """Safe to start an ESP call: renewed well within the lease, so no other
        task can have taken the rows over."""
        return not self.lost and time.monotonic() - self.renewed_at < self.seconds * 2 / 3

    def renew_if_due(self) -> bool:
        if self.lost:
            return False
        if time.monotonic() - self.renewed_at < self.seconds / 3:
            return True
        started = time.monotonic()
        held = Delivery.objects.filter(claim_token=self.token, status__in=OWNED).update(
            claimed_at=timezone.now()
        )
        if held:
            self.renewed_at = started
        else:
            self.lost = True
        return held > 0

    def mark_inflight(self, delivery_ids: list[int]) -> bool:
        """Mark rows in flight, only if every one is still this task's; a task that
        lost any of them sends none and stops."""
        started = time.monotonic()
        marked = Delivery.objects.filter(
            id__in=delivery_ids, claim_token=self.token, status=Status.SENDING
        ).update(status=Status.INFLIGHT, claimed_at=timezone.now())
        if marked == len(delivery_ids):
            if len(delivery_ids) and started - self.renewed_at > self.seconds / 3:
                self.renew_if_due()
            return True
        Delivery.objects.filter(id__in=delivery_ids, claim_token=self.token, status=Status.INFLIGHT).update(
            status=Status.SENDING
        )
        self.lost = True
        return False


# --- Connections and the pool of senders ---------------------------------------------------

_local = threading.local()
_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_pool_lock = threading.Lock()


def _settings_key() -> tuple:
    names = ("EMAIL_BACKEND", "EMAIL_TIMEOUT", "EMAIL_HOST", "EMAIL_PORT", "OUTBOX_DIR")
    anymail = sorted((getattr(settings, "ANYMAIL", None) or {}).items())
    return (*(str(getattr(settings, name, "")) for name in names), repr(anymail))


def thread_connection() -> Any:
    """This thread's open backend connection, kept for the process's life (a new
    one when the email settings change)."""
    key = _settings_key()
    connection = getattr(_local, "connection", None)
    if connection is None or _local.key != key:
        if connection is not None:
            connection.close()
        connection = get_connection()
        connection.open()
        settle_environment(connection)
        if settings.MAIL_LEAN_HTTP:
            use_lean_session(connection)
        _local.connection, _local.key = connection, key
    return connection


def sender_pool() -> ThreadPoolExecutor:
    """The process's senders: DIGEST_SEND_CONCURRENCY threads, started once."""
    global _pool, _pool_size
    with _pool_lock:
        if _pool is None or _pool_size != settings.DIGEST_SEND_CONCURRENCY:
            if _pool is not None:
                _pool.shutdown(wait=True)
            _pool_size = settings.DIGEST_SEND_CONCURRENCY
            _pool = ThreadPoolExecutor(max_workers=_pool_size, thread_name_prefix="esp")
        return _pool


class _Inline:
    """Runs each call in the calling thread, over a connection the caller opened."""

    def __init__(self, connection: Any):
        self.connection = connection

    def submit(self, fn: Callable[..., JobOutcome], *args: Any) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, connection=self.connection))
        except Exception as exc:
            future.set_exception(exc)
        return future


def _in_pool(fn: Callable[..., JobOutcome], *args: Any) -> JobOutcome:
    return fn(*args, connection=thread_connection())


# --- One chunk ------------------------------------------------------------------------------


class _Chunk:
    """The state of one chunk while its calls are in flight."""

    def __init__(
        self,
        *,
        run: DigestRun,
        lease: Lease,
        journal: Any,
        limiter: RateLimiter,
        esp: BatchESP | None,
        connection: Any,
        sleep: Callable[[float], None],
    ):
        self.run = run
        self.lease = lease
        self.journal = journal
        self.limiter = limiter
        self.esp = esp
        self.sleep = sleep
        self.inline = connection is not None
        self.executor: Any = _Inline(connection) if connection is not None else sender_pool()
        self.concurrency = 1 if connection is not None else settings.DIGEST_SEND_CONCURRENCY
        self.max_waiting = 2 * self.concurrency
        self.stop = threading.Event()
        self.deadline = run.started_at + timedelta(seconds=settings.DIGEST_RUN_MAX_SECONDS)
        self.outstanding: dict[Future, SendJob] = {}
        self.updates: dict[int, dict] = {}
        self.tried: set[int] = set()
        self.stop_error: TransientSendError | None = None
        self.interrupted = False
        # Calls in flight, sampled at every dispatch: for the benchmark's report.
        self.in_flight_max = 0
        self.in_flight_samples: list[int] = []

    def submit(self, fn: Callable[..., JobOutcome], *args: Any) -> Future:
        if self.inline:
            return self.executor.submit(fn, *args)
        return self.executor.submit(_in_pool, fn, *args)

    def should_stop(self) -> bool:
        return self.stop.is_set() or not self.lease.fresh() or timezone.now() > self.deadline

    # The main thread: dispatch and collect.

    def run_jobs(self, jobs: Iterable[SendJob]) -> None:
        group: list[SendJob] = []
        group_rows = self.concurrency
        try:
            for job in jobs:
                if self.stop.is_set():
                    break
                group.append(job)
                if sum(len(j.members) for j in group) >= group_rows:
                    self._dispatch(group)
                    group = []
            if group and not self.stop.is_set():
                self._dispatch(group)
            self._drain()
        except SoftTimeLimitExceeded:
            logger.warning("run %s: soft time limit reached; recording what was sent", self.run.pk)
            self.interrupted = True
            self.stop.set()
            self._drain()

    def _dispatch(self, group: list[SendJob]) -> None:
        while len(self.outstanding) + len(group) > self.max_waiting:
            self._collect(timeout=self.lease.seconds / 6)
            if self.stop.is_set():
                return
        if not self.lease.renew_if_due() or not self.lease.mark_inflight(
            [member.delivery_id for job in group for member in job.members]
        ):
            logger.warning("run %s: lease lost to another task; stopping", self.run.pk)
            self.interrupted = True
            self.stop.set()
            return
        for job in group:
            self.outstanding[self.submit(self._send, job)] = job
        self.in_flight_max = max(self.in_flight_max, min(len(self.outstanding), self.concurrency))
        self.in_flight_samples.append(min(len(self.outstanding), self.concurrency))
        self._collect(timeout=0)

    def _collect(self, *, timeout: float | None) -> None:
        if not self.outstanding:
            return
        done, _ = wait(list(self.outstanding), timeout=timeout, return_when=FIRST_COMPLETED)
        for future in done:
            self.outstanding.pop(future)
            self._merge(future.result())
        if not self.lease.renew_if_due():
            self.stop.set()

    def _drain(self) -> None:
        while self.outstanding:
            try:
                self._collect(timeout=self.lease.seconds / 6)
            except SoftTimeLimitExceeded:
                self.interrupted = True
                self.stop.set()

    def settle_outstanding(self) -> set[int]:
        """Record the answers that have arrived; the rows of calls still out."""
        out: set[int] = set()
        for future, job in list(self.outstanding.items()):
            if future.done() and future.exception() is None:
                self._merge(future.result())
            else:
                out.update(member.delivery_id for member in job.members)
            self.outstanding.pop(future)
        return out - set(self.updates)

    def _merge(self, outcome: JobOutcome) -> None:
        if outcome.journal and not self.journal.thread_safe:
            self.journal.record_many(outcome.journal)
        self.updates.update(outcome.updates)
        self.tried.update(outcome.tried)
        if outcome.error is not None:
            if self.stop_error is None:
                self.stop_error = outcome.error
            self.stop.set()

    # The sender threads.

    def _send(self, job: SendJob, *, connection: Any) -> JobOutcome:
        if self.should_stop():
            return JobOutcome()  # not tried: released without an attempt
        if isinstance(job, BatchJob):
            outcome = send_batch_job(
                job,
                connection=connection,
                limiter=self.limiter,
                should_stop=self.should_stop,
                sleep=self.sleep,
            )
        else:
            outcome = self._send_single(job, connection)
        if outcome.journal and self.journal.thread_safe:
            self.journal.record_many(outcome.journal)
        return outcome

    def _send_single(self, job: SendJob, connection: Any) -> JobOutcome:
        (member,) = job.members
        outcome = JobOutcome()
        try:
            accepted = send_one(
                connection, job.message, sleep=self.sleep, limiter=self.limiter, should_stop=self.should_stop
            )
            message_id = accepted.message_id
        except PermanentSendError as exc:
            outcome.updates[member.delivery_id] = {"status": Status.FAILED, "error": str(exc)[:500]}
            return outcome
        except UncertainSendError as exc:
            logger.warning("delivery %s: %s; asking the ESP whether it has it", member.delivery_id, exc)
            found = resolve_at_esp(connection, member.delivery_id)
            if found is None:
                outcome.error = exc
                outcome.tried = [member.delivery_id]
                return outcome
            if found is _UNKNOWN:
                outcome.error = exc
                if settings.DIGEST_UNCERTAIN == "resend":
                    outcome.tried = [member.delivery_id]
                else:
                    outcome.updates[member.delivery_id] = uncertain_update(str(exc))
                return outcome
            message_id = str(found)
        except TransientSendError as exc:
            outcome.error = exc
            if not exc.rate_limited:
                outcome.tried = [member.delivery_id]
            return outcome
        outcome.journal[member.delivery_id] = JournalEntry(message_id, job.subject, job.paper_ids)
        outcome.updates[member.delivery_id] = accepted_update(
            message_id=message_id, subject=job.subject, paper_ids=job.paper_ids
        )
        return outcome


_UNKNOWN = object()


def resolve_at_esp(connection: Any, delivery_id: int) -> object:
    """Ask the ESP about a message whose answer never came: its id when it has
    it, None when it surely has not, _UNKNOWN when it cannot say."""
    try:
        return find_sent(connection, delivery_id)
    except LookupUnavailable as exc:
        logger.info("cannot ask the ESP about delivery %s: %s", delivery_id, exc)
        return _UNKNOWN


def _single_jobs(
    *, rows: list[tuple], readers: dict, composer: DigestComposer, run: DigestRun, updates: dict[int, dict]
) -> Iterator[SendJob]:
    for delivery_id, subscriber_id, *_ in rows:
        if delivery_id in updates:
            continue
        reader = readers[delivery_id]
        digest = compose_recording_outcome(
            delivery_id, updates, functools.partial(composer.message_parts, reader, delivery_id)
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
        yield SendJob(
            message=message,
            members=[Member(delivery_id, subscriber_id, reader.email)],
            subject=digest.subject,
            paper_ids=list(digest.paper_ids),
        )


def _resolve_inflight(chunk: _Chunk, delivery_ids: list[int]) -> list[int]:
    """Rows a gone task left in flight: the ESP's message search says whether it
    has them (sent, or free to send); without one, DIGEST_UNCERTAIN decides.
    Returns the rows that may be sent."""
    if not delivery_ids:
        return []
    free: list[int] = []

    def ask(delivery_id: int, *, connection: Any) -> JobOutcome:
        outcome = JobOutcome()
        found = resolve_at_esp(connection, delivery_id)
        if found is _UNKNOWN:
            if settings.DIGEST_UNCERTAIN == "skip":
                outcome.updates[delivery_id] = uncertain_update(
                    "the task sending it stopped before the ESP answered"
                )
        elif found is not None:
            outcome.updates[delivery_id] = {
                "status": Status.SENT,
                "esp_message_id": str(found),
                "sent_at": timezone.now(),
                "error": "",
            }
        return outcome

    futures = {chunk.submit(ask, delivery_id): delivery_id for delivery_id in delivery_ids}
    for future, delivery_id in futures.items():
        outcome = future.result()
        chunk.updates.update(outcome.updates)
        if delivery_id not in outcome.updates:
            free.append(delivery_id)
    if free:
        Delivery.objects.filter(id__in=free, claim_token=chunk.lease.token, status=Status.INFLIGHT).update(
            status=Status.SENDING
        )
    return free


def deliveries_send_chunk(
    *,
    run_id: int,
    id_from: int,
    id_to: int,
    claim_token: str,
    connection: Any = None,
    sleep: Callable[[float], None] = time.sleep,
) -> ChunkResult:
    """Lease, compose and send one chunk; every leased row ends sent, empty,
    cancelled, failed, uncertain, or back to planned for a later retry.

    With `connection` every call goes over it in this thread, one at a time;
    otherwise the process's pool of senders carries them."""
    result = ChunkResult()
    esp = batch_esp()  # before claiming: a misconfiguration leaves the rows untouched
    run = DigestRun.objects.get(id=run_id)
    result.claimed = claim(run_id=run_id, id_from=id_from, id_to=id_to, claim_token=claim_token)
    if not result.claimed:
        return result
    lease = Lease(claim_token)
    claimed = Delivery.objects.filter(run_id=run_id, claim_token=claim_token)
    rows = list(
        claimed.filter(status__in=OWNED)
        .order_by("id")
        .values_list("id", "subscriber_id", "attempts", "status")
    )
    journal = journal_for(run.edition)
    chunk = _Chunk(
        run=run,
        lease=lease,
        journal=journal,
        limiter=esp_rate_limiter(),
        esp=esp,
        connection=connection,
        sleep=sleep,
    )
    own_connection = False
    if connection is not None and not getattr(connection, "connection_open", False):
        own_connection = True
    attempts = {row[0]: row[2] for row in rows}
    subscriber_of = {row[0]: row[1] for row in rows}
    try:
        if own_connection:
            connection.open()
        already = journal.recorded(list(attempts))
        for delivery_id, entry in already.items():
            chunk.updates[delivery_id] = accepted_update(
                message_id=entry.message_id, subject=entry.subject, paper_ids=entry.paper_ids
            )
        _resolve_inflight(
            chunk, [row[0] for row in rows if row[3] == Status.INFLIGHT and row[0] not in chunk.updates]
        )
        to_send = [row for row in rows if row[0] not in chunk.updates]
        readers, inactive = readers_for_deliveries(
            edition=run.edition,
            rows=[row[:3] for row in to_send],
            subscriber_query=claimed.values("subscriber_id"),
        )
        for delivery_id, status in inactive.items():
            chunk.updates[delivery_id] = {"status": Status.CANCELLED, "error": f"subscriber is {status}"}
        composer = composer_for(run)
        make_jobs = functools.partial(batch_jobs, esp=esp) if esp is not None else _single_jobs
        chunk.run_jobs(
            make_jobs(rows=to_send, readers=readers, composer=composer, run=run, updates=chunk.updates)
        )
    except SoftTimeLimitExceeded:
        chunk.interrupted = True
        chunk.stop.set()
        chunk._drain()
    finally:
        if own_connection:
            connection.close()
        # Calls still out (the task is being torn down by something other than
        # the soft time limit) keep their rows in flight, for whoever takes them
        # over to resolve; answers that did arrive are recorded.
        still_out = chunk.settle_outstanding()
        _release_unfinished(chunk, [row for row in rows if row[0] not in still_out], attempts)
        deliveries_record_outcomes(
            run=run,
            updates=chunk.updates,
            subscriber_of=subscriber_of,
            result=result,
            claim_token=claim_token,
        )
        esp_calls_flush()
    result.interrupted = chunk.interrupted
    result.in_flight_max = chunk.in_flight_max
    result.in_flight_avg = (
        sum(chunk.in_flight_samples) / len(chunk.in_flight_samples) if chunk.in_flight_samples else 0.0
    )
    if chunk.stop_error is not None:
        result.retry_after = chunk.stop_error.retry_after
        result.errors.append(str(chunk.stop_error))
    return result


def _release_unfinished(chunk: _Chunk, rows: list[tuple], attempts: dict[int, int]) -> None:
    """Rows without an outcome go back to the pool. Only rows whose call reached
    the ESP and failed count an attempt; after DIGEST_MAX_ATTEMPTS they fail."""
    reason = str(chunk.stop_error) if chunk.stop_error else ""
    for delivery_id, *_ in rows:
        if delivery_id in chunk.updates:
            continue
        tries = attempts[delivery_id] + (1 if delivery_id in chunk.tried else 0)
        if tries >= settings.DIGEST_MAX_ATTEMPTS:
            chunk.updates[delivery_id] = {
                "status": Status.FAILED,
                "attempts": tries,
                "error": f"gave up after {tries} attempts: {reason or 'interrupted'}"[:500],
            }
        else:
            chunk.updates[delivery_id] = {
                "status": Status.PLANNED,
                "attempts": tries,
                "claim_token": "",
                "claimed_at": None,
                "error": reason[:500],
            }


def retry_countdown(*, retry_after: float | None, retries: int) -> float:
    """Seconds before a deferred chunk tries again: the ESP's Retry-After, or
    exponential backoff, whichever is longer, capped so no task waits long."""
    backoff = settings.DIGEST_SEND_BACKOFF * 2 ** min(retries, 5)
    return min(max(retry_after or 0.0, backoff), 60.0)


def deliveries_send_chunk_blocking(
    *, run_id: int, id_from: int, id_to: int, claim_token: str, sleep: Callable[[float], None] = time.sleep
) -> ChunkResult:
    """Send a chunk in this process, waiting out transient ESP trouble in place.

    Used where no broker can hold a retry (the embedded mode, run_digest). A
    row counts an attempt each time its call fails, so a dead ESP ends in
    failed deliveries after DIGEST_MAX_ATTEMPTS rather than looping for ever."""
    total = ChunkResult()
    retries = 0
    while True:
        result = deliveries_send_chunk(run_id=run_id, id_from=id_from, id_to=id_to, claim_token=claim_token)
        total.claimed = max(total.claimed, result.claimed)
        total.sent += result.sent
        total.empty += result.empty
        total.cancelled += result.cancelled
        total.failed += result.failed
        total.uncertain += result.uncertain
        total.errors += result.errors
        if not result.deferred:
            return total
        sleep(retry_countdown(retry_after=result.retry_after, retries=retries))
        retries += 1
