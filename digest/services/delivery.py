"""Plan, claim, compose and send deliveries.

The database is touched in bulk: one query plans a batch of rows, a chunk
claims its rows with one conditional UPDATE, loads what composing needs in a
handful of queries, and writes every outcome back in one bulk UPDATE.
"""

import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.mail import get_connection
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from digest.compose import (
    SENT_LOOKBACK_DAYS,
    CompiledDigest,
    DigestComposer,
    Reader,
    build_preferences,
    window_start,
)
from digest.emails import build_message, message_domain
from digest.models import Delivery, DigestRun
from digest.sending import (
    PermanentSendError,
    TransientSendError,
    batch_outcome,
    refused_in_request,
    send_one,
    send_with_retries,
    settle_environment,
)
from digest.services.journal import JournalEntry, journal_for
from subscribers.models import Subscriber
from subscribers.services import list_headers

logger = logging.getLogger(__name__)
Status = Delivery.Status


# --- Planning -------------------------------------------------------------------------


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
    pending = Q(status=Status.SENDING, claimed_at__lt=stale)
    if not stale_only:
        pending |= Q(status=Status.PLANNED)
    ids = Delivery.objects.filter(run=run).filter(pending).order_by("id").values_list("id", flat=True)
    return chunk_ranges(ids.iterator(chunk_size=10000), settings.DIGEST_CHUNK_SIZE)


# --- Sending a chunk ------------------------------------------------------------------


@dataclass
class ChunkResult:
    claimed: int = 0
    sent: int = 0
    empty: int = 0
    cancelled: int = 0
    failed: int = 0
    deferred: int = 0
    retry_after: float | None = None
    errors: list[str] = field(default_factory=list)


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


def load_readers(
    *, edition: date, rows: list[tuple[int, int, int]], require_active: bool = True
) -> tuple[dict[int, Reader], dict[int, str]]:
    """Readers for claimed rows (delivery id, subscriber id, attempts), in bulk.

    Returns readers by delivery id, and the status of subscribers who are no
    longer active (they unsubscribed after planning)."""
    from digest.selectors import load_affinities

    subscriber_ids = [subscriber_id for _, subscriber_id, _ in rows]
    subscribers = {
        row[0]: row
        for row in Subscriber.objects.filter(id__in=subscriber_ids).values_list(
            "id",
            "email",
            "status",
            "token_version",
            "frequency",
            "interests",
            "digest_size",
            "last_digest_at",
            "with_abstracts",
        )
    }
    topics: dict[int, list[str]] = defaultdict(list)
    for subscriber_id, slug in Subscriber.topics.through.objects.filter(
        subscriber_id__in=subscriber_ids, topic__is_active=True
    ).values_list("subscriber_id", "topic__slug"):
        topics[subscriber_id].append(slug)
    sent_before: dict[int, set[int]] = defaultdict(set)
    for subscriber_id, paper_ids in Delivery.objects.filter(
        subscriber_id__in=subscriber_ids,
        status=Status.SENT,
        edition__gte=edition - timedelta(days=SENT_LOOKBACK_DAYS),
        edition__lt=edition,
    ).values_list("subscriber_id", "paper_ids"):
        sent_before[subscriber_id].update(paper_ids or [])
    affinities = load_affinities(subscriber_ids)

    readers: dict[int, Reader] = {}
    inactive: dict[int, str] = {}
    for delivery_id, subscriber_id, _ in rows:
        row = subscribers.get(subscriber_id)
        if row is None or (require_active and row[2] != Subscriber.Status.ACTIVE):
            inactive[delivery_id] = row[2] if row else "deleted"
            continue
        _, email, _, token_version, frequency, interests, digest_size, last_digest_at, with_abstracts = row
        readers[delivery_id] = Reader(
            subscriber_id=subscriber_id,
            email=email,
            token_version=token_version,
            preferences=build_preferences(
                topics=topics.get(subscriber_id, ()),
                interests=interests,
                digest_size=digest_size,
                affinity=affinities.get(subscriber_id),
            ),
            window_start=window_start(
                edition=edition,
                frequency=frequency,
                last_digest_on=last_digest_at.date() if last_digest_at else None,
            ),
            already_sent=frozenset(sent_before.get(subscriber_id, ())),
            delivery_id=delivery_id,
            frequency=frequency,
            with_abstracts=with_abstracts,
        )
    return readers, inactive


def delivery_message_id(edition: date, delivery_id: int, domain: str | None = None) -> str:
    """Stable per delivery, so a receiving server can drop a duplicate copy."""
    return f"<digest.{edition:%Y%m%d}.{delivery_id}@{domain or message_domain()}>"


def _compose(delivery_id: int, updates: dict[int, dict], compose: Callable[[], object]):
    """Run one reader's composing step; a reader with nothing to send is recorded
    as empty, one whose digest cannot be built as failed, and both return None."""
    try:
        composed = compose()
    except Exception as exc:
        logger.exception("could not compose delivery %s", delivery_id)
        updates[delivery_id] = {"status": Status.FAILED, "error": f"compose error: {exc}"[:500]}
        return None
    if composed is None:
        updates[delivery_id] = {"status": Status.EMPTY}
    return composed


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
    extra = batch_esp_extra()  # before claiming: a misconfiguration leaves the rows untouched
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
    readers, inactive = load_readers(edition=run.edition, rows=[row for row in rows if row[0] not in already])
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
            stop_error = _send_in_batches(
                rows=rows,
                readers=readers,
                composer=composer,
                run=run,
                connection=connection,
                esp_extra=extra,
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
            digest = _compose(delivery_id, updates, lambda r=reader: composer.message_parts(r))
            if digest is None:
                continue
            message = build_message(
                to=reader.email,
                subject=digest.subject,
                text=digest.text,
                html=digest.html,
                headers={**digest.headers, "Message-ID": delivery_message_id(run.edition, delivery_id)},
                tags=["digest"],
                metadata={"delivery_id": str(delivery_id), "edition": run.edition.isoformat()},
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
        _write_outcomes(run=run, updates=updates, sent_subscribers=sent_subscribers, result=result)

    if stop_error is not None:
        result.retry_after = stop_error.retry_after
        result.errors.append(str(stop_error))
    return result


# --- Batches: render once, personalise at the ESP ----------------------------------------
#
# Readers who get the same list share one rendered HTML and text with PBX<KEY>PBX
# placeholders. For an ESP whose anymail backend fills per-recipient values into
# the content without a template stored at the ESP, one API call carries the
# shared content once and each recipient's links as substitutions; the ESP still
# sends each recipient an individual message (one "personalization" each, so no
# one sees another's address). The payload shrinks from N copies of ~60 KB to one
# copy plus N small dicts, and N HTTP exchanges become one.

# anymail backend -> the esp_extra that makes its merge fields our placeholders.
BATCH_BACKENDS: dict[str, dict] = {
    "anymail.backends.sendgrid.EmailBackend": {"merge_field_format": "PBX{}PBX"},
}
MAX_BATCH_SIZE = 1000  # SendGrid's limit on personalizations per call
# Distinct digests a chunk holds while their batches fill; each holds its HTML.
MAX_WAITING_BATCHES = 32


def batch_esp_extra(backend: str | None = None) -> dict | None:
    """The esp_extra for batch sends through this backend, or None to send one by one.

    DIGEST_ESP_BATCH: "auto" batches when the backend is known to support it,
    "off" never does, "on" requires it (a misconfiguration fails loudly rather
    than falling back to the slower path)."""
    backend = backend or settings.EMAIL_BACKEND
    mode = settings.DIGEST_ESP_BATCH
    if mode == "off":
        return None
    extra = BATCH_BACKENDS.get(backend)
    if extra is None and mode == "on":
        raise ImproperlyConfigured(
            f"DIGEST_ESP_BATCH=on, but {backend} cannot personalise a batch; "
            f"batching works with: {', '.join(sorted(BATCH_BACKENDS))}"
        )
    return dict(extra) if extra is not None else None


def batch_size() -> int:
    return max(1, min(settings.DIGEST_ESP_BATCH_SIZE, MAX_BATCH_SIZE))


@dataclass
class _Batch:
    compiled: CompiledDigest
    # delivery id, subscriber id, address, placeholder values
    members: list[tuple[int, int, str, dict[str, str]]] = field(default_factory=list)
    addresses: set[str] = field(default_factory=set)


def _send_in_batches(
    *,
    rows,
    readers: dict[int, Reader],
    composer: DigestComposer,
    run: DigestRun,
    connection,
    esp_extra: dict,
    journal,
    updates: dict[int, dict],
    sent_subscribers: list[int],
    sleep: Callable[[float], None],
) -> TransientSendError | None:
    """Group the chunk's readers by compiled digest and send each group in calls
    of up to DIGEST_ESP_BATCH_SIZE recipients. Returns the transient error that
    stopped the chunk, if any; rows not sent stay without an outcome."""

    def flush(batch: _Batch) -> TransientSendError | None:
        sent = _send_batch(
            batch=batch, run=run, connection=connection, esp_extra=esp_extra, journal=journal, sleep=sleep
        )
        updates.update(sent.updates)
        sent_subscribers.extend(sent.sent_subscribers)
        return sent.error

    return _compose_and_flush(rows=rows, readers=readers, composer=composer, updates=updates, flush=flush)


def _compose_and_flush(*, rows, readers, composer, updates, flush) -> TransientSendError | None:
    size = batch_size()
    # Keyed by the compiled digest's identity; the batch holds a reference, so
    # the key cannot be reused while the batch waits.
    groups: dict[int, _Batch] = {}
    for delivery_id, subscriber_id, _ in rows:
        if delivery_id in updates:
            continue
        reader = readers[delivery_id]

        def compiled_with_values(reader=reader):
            compiled = composer.compiled_for(reader)
            return None if compiled is None else (compiled, composer.personal_values(reader, compiled))

        composed = _compose(delivery_id, updates, compiled_with_values)
        if composed is None:
            continue
        compiled, values = composed
        batch = groups.get(id(compiled))
        if batch is not None and reader.email.lower() in batch.addresses:
            # The same address twice in one call would merge two messages into one.
            del groups[id(compiled)]
            if error := flush(batch):
                return error
            batch = None
        if batch is None:
            batch = groups[id(compiled)] = _Batch(compiled)
        batch.members.append((delivery_id, subscriber_id, reader.email, values))
        batch.addresses.add(reader.email.lower())
        if len(batch.members) >= size:
            del groups[id(compiled)]
            if error := flush(batch):
                return error
        elif len(groups) > MAX_WAITING_BATCHES and (error := flush(groups.pop(next(iter(groups))))):
            # Readers come ordered by preferences, so the oldest group is
            # usually complete; sending it keeps memory flat.
            return error
    for batch in groups.values():
        if error := flush(batch):
            return error
    return None


def _send_batch(
    *,
    batch: _Batch,
    run: DigestRun,
    connection,
    esp_extra: dict,
    journal,
    sleep: Callable[[float], None],
) -> "_Sent":
    """Send one batch (retrying transient errors) and record what the ESP took
    in the journal at once. Outcomes come back for the chunk to write."""
    sent = _Sent()
    compiled = batch.compiled
    html, text = compiled.template()
    members = {
        address: (delivery_id, subscriber_id) for delivery_id, subscriber_id, address, _ in batch.members
    }
    merge_data = {address: values for _, _, address, values in batch.members}
    domain = message_domain()
    merge_headers = {
        address: {
            **list_headers(unsubscribe_url=values["UNSUB"], frequency=compiled.frequency),
            "Message-ID": delivery_message_id(run.edition, delivery_id, domain),
        }
        for delivery_id, _, address, values in batch.members
    }
    merge_metadata = {
        address: {"delivery_id": str(delivery_id)} for delivery_id, _, address, _ in batch.members
    }
    message = build_message(
        to=batch.members[0][2],
        subject=compiled.subject,
        text=text,
        html=html,
        tags=["digest"],
        metadata={"edition": run.edition.isoformat()},
    )
    recipients = list(members)
    while recipients:
        message.to = recipients
        message.merge_data = {address: merge_data[address] for address in recipients}
        message.merge_headers = {address: merge_headers[address] for address in recipients}
        message.merge_metadata = {address: merge_metadata[address] for address in recipients}
        message.esp_extra = dict(esp_extra)
        try:
            send_with_retries(connection, message, sleep=sleep)
        except TransientSendError as exc:
            sent.error = exc
            return sent
        except PermanentSendError as exc:
            refused = refused_in_request(exc, recipients)
            if not refused:
                # The call itself was refused: every delivery in it fails with the reason.
                refused = dict.fromkeys(recipients, str(exc))
            for address, reason in refused.items():
                sent.updates[members[address][0]] = {"status": Status.FAILED, "error": reason[:500]}
            # The ESP named the recipients it refused; send the rest again.
            recipients = [address for address in recipients if address not in refused]
            continue
        outcome = batch_outcome(message)
        paper_ids = list(compiled.paper_ids)
        entries = {
            members[address][0]: JournalEntry(message_id, compiled.subject, paper_ids)
            for address, message_id in outcome.accepted.items()
        }
        journal.record_many(entries)
        sent_at = timezone.now()
        for address, message_id in outcome.accepted.items():
            delivery_id, subscriber_id = members[address]
            sent.updates[delivery_id] = {
                "status": Status.SENT,
                "esp_message_id": message_id,
                "sent_at": sent_at,
                "subject": compiled.subject,
                "paper_ids": paper_ids,
                "error": "",
            }
            sent.sent_subscribers.append(subscriber_id)
        for address, reason in outcome.refused.items():
            sent.updates[members[address][0]] = {"status": Status.FAILED, "error": reason[:500]}
        return sent
    return sent


@dataclass
class _Sent:
    updates: dict[int, dict] = field(default_factory=dict)
    sent_subscribers: list[int] = field(default_factory=list)
    error: TransientSendError | None = None


_OUTCOME_FIELDS = (
    "status",
    "esp_message_id",
    "sent_at",
    "subject",
    "paper_ids",
    "error",
    "claim_token",
    "claimed_at",
)


def _write_outcomes(
    *, run: DigestRun, updates: dict[int, dict], sent_subscribers: list[int], result: ChunkResult
):
    objects = []
    fields: set[str] = set()
    for delivery_id, changes in updates.items():
        obj = Delivery(id=delivery_id)
        for name, value in changes.items():
            setattr(obj, name, value)
            fields.add(name)
        if changes["status"] != Status.PLANNED:
            obj.claim_token = ""
            fields.add("claim_token")
        objects.append(obj)
        status = changes["status"]
        if status == Status.SENT:
            result.sent += 1
        elif status == Status.EMPTY:
            result.empty += 1
        elif status == Status.CANCELLED:
            result.cancelled += 1
        elif status == Status.FAILED:
            result.failed += 1
        else:
            result.deferred += 1
    with transaction.atomic():
        if objects and connection.vendor == "postgresql":
            _update_outcomes_postgresql(updates)
        elif objects:
            Delivery.objects.bulk_update(objects, sorted(fields), batch_size=2000)
        if sent_subscribers:
            Subscriber.objects.filter(id__in=sent_subscribers).update(last_digest_at=timezone.now())
        DigestRun.objects.filter(id=run.id).update(
            sent_count=F("sent_count") + result.sent,
            empty_count=F("empty_count") + result.empty,
            failed_count=F("failed_count") + result.failed,
        )


# One statement for a whole chunk: each row's changes travel as a JSON object,
# and a column a row does not mention keeps its value. Django's bulk_update
# builds a CASE expression per field and row, which costs more than sending.
_OUTCOME_COLUMNS = {
    "status": "e.doc->>'status'",
    "esp_message_id": "e.doc->>'esp_message_id'",
    "sent_at": "(e.doc->>'sent_at')::timestamptz",
    "subject": "e.doc->>'subject'",
    "paper_ids": "e.doc->'paper_ids'",
    "error": "e.doc->>'error'",
    "claim_token": "e.doc->>'claim_token'",
    "claimed_at": "(e.doc->>'claimed_at')::timestamptz",
}
_OUTCOME_SET = ", ".join(
    f"{column} = CASE WHEN e.doc ? '{column}' THEN {value} ELSE d.{column} END"
    for column, value in _OUTCOME_COLUMNS.items()
)
# Built from the fixed column map above; the rows travel as one bound parameter.
_OUTCOME_SQL = (
    f"UPDATE digest_delivery AS d SET {_OUTCOME_SET} "  # noqa: S608
    "FROM jsonb_array_elements(%s::jsonb) AS e(doc) WHERE d.id = (e.doc->>'id')::bigint"
)


def _update_outcomes_postgresql(updates: dict[int, dict]) -> None:
    rows = []
    for delivery_id, changes in updates.items():
        row = {"id": delivery_id, **changes}
        if changes["status"] != Status.PLANNED:
            row["claim_token"] = ""
        for name in ("sent_at", "claimed_at"):
            if row.get(name) is not None:
                row[name] = row[name].isoformat()
        rows.append(row)
    with connection.cursor() as cursor:
        cursor.execute(_OUTCOME_SQL, [json.dumps(rows)])


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


def deliveries_resend(*, delivery_ids: list[int]) -> int:
    """Put failed deliveries back in the queue; returns how many were queued."""
    from digest.tasks import send_chunk

    with transaction.atomic():
        failed = list(
            Delivery.objects.select_for_update()
            .filter(id__in=delivery_ids, status=Status.FAILED, run__isnull=False)
            .values_list("id", "run_id")
        )
        ids = [delivery_id for delivery_id, _ in failed]
        Delivery.objects.filter(id__in=ids).update(
            status=Status.PLANNED, attempts=0, error="", claim_token="", claimed_at=None
        )
        for run_id in {run_id for _, run_id in failed}:
            count = sum(1 for _, rid in failed if rid == run_id)
            DigestRun.objects.filter(id=run_id).update(
                failed_count=F("failed_count") - count, status=DigestRun.Status.SENDING, finished_at=None
            )
        for delivery_id, run_id in failed:
            transaction.on_commit(lambda d=delivery_id, r=run_id: send_chunk.delay(r, d, d))
    return len(failed)
