"""What one ESP call carries and what came of it, and writing a chunk's results
back: delivery rows, the readers' last digest time and the run's counters.

Every write is conditional on the task's claim token: a task that lost its
lease (its rows were taken over by another task) writes nothing over them.
"""

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from digest.models import Delivery, DigestRun
from digest.services.journal import JournalEntry
from mail.send import TransientSendError
from subscribers.models import Subscriber

logger = logging.getLogger(__name__)
Status = Delivery.Status


@dataclass
class ChunkResult:
    claimed: int = 0
    sent: int = 0
    empty: int = 0
    cancelled: int = 0
    failed: int = 0
    uncertain: int = 0
    deferred: int = 0
    retry_after: float | None = None
    # Stopped by the soft time limit or a lost lease, not by the ESP.
    interrupted: bool = False
    # ESP calls this chunk kept in flight at once (largest, and average at each dispatch).
    in_flight_max: int = 0
    in_flight_avg: float = 0.0
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Member:
    """One reader of an ESP call."""

    delivery_id: int
    subscriber_id: int
    address: str


@dataclass
class SendJob:
    """One ESP call: a message to one reader, or a batch to many."""

    message: Any
    members: list[Member]
    subject: str
    paper_ids: list[int]


@dataclass
class JobOutcome:
    """What came of one call. `tried` rows reached the ESP and met a transient
    error: they go back to the pool with one more attempt. Rows of the job in
    none of these were never tried and go back without one."""

    updates: dict[int, dict] = field(default_factory=dict)
    journal: dict[int, JournalEntry] = field(default_factory=dict)
    tried: list[int] = field(default_factory=list)
    error: TransientSendError | None = None


def accepted_update(*, message_id: str, subject: str, paper_ids: list[int]) -> dict:
    return {
        "status": Status.SENT,
        "esp_message_id": message_id,
        "sent_at": timezone.now(),
        "subject": subject,
        "paper_ids": paper_ids,
        "error": ""
        if message_id
        else "the ESP accepted it; its answer could not be read, so its id is unknown",
    }


def uncertain_update(reason: str) -> dict:
    """A row whose message the ESP may or may not have, left alone (DIGEST_UNCERTAIN=skip)."""
    return {
        "status": Status.UNCERTAIN,
        "error": f"the ESP may have it and cannot be asked; not sent again (DIGEST_UNCERTAIN=skip): {reason}"[
            :500
        ],
    }


def compose_recording_outcome(delivery_id: int, updates: dict[int, dict], compose: Callable[[], Any]) -> Any:
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


_OUTCOME_FIELDS = (
    "status",
    "esp_message_id",
    "sent_at",
    "subject",
    "paper_ids",
    "error",
    "claim_token",
    "claimed_at",
    "attempts",
)


def deliveries_record_outcomes(
    *,
    run: DigestRun,
    updates: dict[int, dict],
    subscriber_of: dict[int, int],
    result: ChunkResult,
    claim_token: str,
) -> None:
    """Write each row's outcome, only where the row is still this task's, and
    count what was written into `result` and the run's counters."""
    for changes in updates.values():
        if changes["status"] != Status.PLANNED:
            changes["claim_token"] = ""
    with transaction.atomic():
        if updates and connection.vendor == "postgresql":
            written = _update_outcomes_postgresql(updates, claim_token)
        elif updates:
            written = _update_outcomes_orm(updates, claim_token)
        else:
            written = set()
        counts = dict.fromkeys(Status.values, 0)
        for delivery_id in written:
            counts[updates[delivery_id]["status"]] += 1
        result.sent += counts[Status.SENT]
        result.empty += counts[Status.EMPTY]
        result.cancelled += counts[Status.CANCELLED]
        result.failed += counts[Status.FAILED]
        result.uncertain += counts[Status.UNCERTAIN]
        result.deferred += counts[Status.PLANNED]
        lost = len(updates) - len(written)
        if lost:
            logger.warning("%s rows were taken over by another task; their outcomes were not written", lost)
        sent_subscribers = [
            subscriber_of[delivery_id]
            for delivery_id in written
            if updates[delivery_id]["status"] == Status.SENT
        ]
        if sent_subscribers:
            Subscriber.objects.filter(id__in=sent_subscribers).update(last_digest_at=timezone.now())
        DigestRun.objects.filter(id=run.pk).update(
            sent_count=F("sent_count") + counts[Status.SENT],
            empty_count=F("empty_count") + counts[Status.EMPTY],
            failed_count=F("failed_count") + counts[Status.FAILED],
            uncertain_count=F("uncertain_count") + counts[Status.UNCERTAIN],
        )


def _update_outcomes_orm(updates: dict[int, dict], claim_token: str) -> set[int]:
    owned = set(
        Delivery.objects.filter(id__in=list(updates), claim_token=claim_token).values_list("id", flat=True)
    )
    objects = []
    fields: set[str] = set()
    for delivery_id in owned:
        obj = Delivery(id=delivery_id)
        for name, value in updates[delivery_id].items():
            setattr(obj, name, value)
            fields.add(name)
        objects.append(obj)
    if objects:
        Delivery.objects.bulk_update(objects, sorted(fields), batch_size=2000)
    return owned


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
    "attempts": "(e.doc->>'attempts')::smallint",
}
_OUTCOME_SET = ", ".join(
    f"{column} = CASE WHEN e.doc ? '{column}' THEN {value} ELSE d.{column} END"
    for column, value in _OUTCOME_COLUMNS.items()
)
# Built from the fixed column map above; the rows travel as one bound parameter.
_OUTCOME_SQL = (
    f"UPDATE digest_delivery AS d SET {_OUTCOME_SET} "  # noqa: S608
    "FROM jsonb_array_elements(%s::jsonb) AS e(doc) "
    "WHERE d.id = (e.doc->>'id')::bigint AND d.claim_token = %s RETURNING d.id"
)


def _update_outcomes_postgresql(updates: dict[int, dict], claim_token: str) -> set[int]:
    rows = []
    for delivery_id, changes in updates.items():
        row = {"id": delivery_id, **changes}
        for name in ("sent_at", "claimed_at"):
            if row.get(name) is not None:
                row[name] = row[name].isoformat()
        rows.append(row)
    with connection.cursor() as cursor:
        cursor.execute(_OUTCOME_SQL, [json.dumps(rows), claim_token])
        return {row[0] for row in cursor.fetchall()}
