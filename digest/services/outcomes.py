"""Writing a chunk's results back: delivery rows, the readers' last digest time and the run's counters."""

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from digest.models import Delivery, DigestRun
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
    deferred: int = 0
    retry_after: float | None = None
    errors: list[str] = field(default_factory=list)


def compose_recording_outcome(delivery_id: int, updates: dict[int, dict], compose: Callable[[], object]):
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
)


def deliveries_record_outcomes(
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
