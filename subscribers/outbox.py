"""The outbox of transactional email: confirmations, preference and data links.

Every such email starts as an ``OutgoingEmail`` row written in the same
transaction as the change that calls for it, so a committed signup always has
its email, whatever the broker does. After the commit a drain task is queued;
if the broker refuses it, the periodic ``subscribers.drain_outgoing_email``
beat task (every ``OUTGOING_EMAIL_DRAIN_EVERY`` seconds) and the next
successful queueing send what is waiting.

Workers claim rows with one conditional UPDATE (unsent, not claimed or claimed
by a worker silent for ``CLAIM_TIMEOUT``), so two workers never send the same
row; a row is marked sent right after the backend accepts it. A worker killed
between those two steps leaves the row to be claimed and sent again: at least
once, nearly always exactly once. Failed attempts back off and are retried up to
``OUTGOING_EMAIL_MAX_ATTEMPTS`` times, with the last error kept on the row.
"""

import json
import logging
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.mail import EmailMessage
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from kombu import pools

from digest.models import Topic
from mail.build import build_email
from subscribers import links, tokens
from subscribers.models import OutgoingEmail, Subscriber

logger = logging.getLogger(__name__)

Kind = OutgoingEmail.Kind
Status = Subscriber.Status
CLAIM_TIMEOUT = timedelta(minutes=5)
BATCH = 50
MAX_BATCHES = 20
BACKOFF_CAP = timedelta(hours=1)


class _NotCalledFor(Exception):
    """The email is no longer called for, e.g. the reader confirmed meanwhile."""


def outgoing_email_queue(
    *, kind: str, subscriber_id: int | None = None, payload: dict[str, Any] | None = None
) -> OutgoingEmail:
    """Store an email to send; call inside the transaction of the change that calls for it."""
    row = OutgoingEmail.objects.create(kind=kind, subscriber_id=subscriber_id, payload=payload or {})
    transaction.on_commit(outgoing_email_kick)
    return row


def outgoing_emails_queue(*, kind: str, subscriber_ids: Iterable[int]) -> int:
    """Store one email of this kind per subscriber in one insert, with a single drain queued on commit."""
    rows = OutgoingEmail.objects.bulk_create(
        [
            OutgoingEmail(kind=kind, subscriber_id=subscriber_id, payload={})
            for subscriber_id in subscriber_ids
        ],
        batch_size=1000,
    )
    if rows:
        transaction.on_commit(outgoing_email_kick)
    return len(rows)


def outgoing_email_kick() -> None:
    """Queue a drain now. A broker outage is logged, not raised: the rows wait in the database."""
    from subscribers.tasks import drain_outgoing_email

    app = drain_outgoing_email.app
    try:
        if app.conf.task_always_eager:
            drain_outgoing_email.apply_async()
            return
        # No connection or publish retries (kombu's defaults wait about 6 s for a
        # dead broker): the request must not hang, and the periodic drain sends
        # the row anyway.
        target = app.connection_for_write(transport_options={"max_retries": 0})
        with pools.connections[target].acquire(block=True, timeout=2) as connection:
            # `connection` is a documented apply_async option the type stubs lack.
            drain_outgoing_email.apply_async(retry=False, connection=connection)  # type: ignore[call-arg]
    except Exception as exc:
        logger.warning(
            "could not queue the outgoing-email task (%s: %s); the periodic drain will send it",
            type(exc).__name__,
            exc,
        )


def _waiting(now: datetime) -> QuerySet[OutgoingEmail]:
    return OutgoingEmail.objects.filter(
        sent_at__isnull=True, failed_at__isnull=True, available_at__lte=now
    ).filter(Q(claimed_at__isnull=True) | Q(claimed_at__lt=now - CLAIM_TIMEOUT))


def _claim(limit: int) -> tuple[str, list[OutgoingEmail]]:
    token = uuid.uuid4().hex
    now = timezone.now()
    ids = list(_waiting(now).order_by("available_at", "pk").values_list("pk", flat=True)[:limit])
    return token, _take(ids, token=token, now=now)


def _take(ids: list[int], *, token: str, now: datetime) -> list[OutgoingEmail]:
    """Claim those of `ids` still waiting. The conditions are in the UPDATE itself:
    a row another worker claimed since `ids` were read no longer matches."""
    if not ids:
        return []
    _waiting(now).filter(pk__in=ids).update(claim_token=token, claimed_at=now, attempts=F("attempts") + 1)
    return list(OutgoingEmail.objects.filter(pk__in=ids, claim_token=token).select_related("subscriber"))


def outgoing_email_drain(*, batch: int = BATCH) -> int:
    """Send what is waiting; returns how many emails went out."""
    sent = 0
    for _round in range(MAX_BATCHES):
        token, rows = _claim(batch)
        for row in rows:
            sent += _deliver(row, token)
        if len(rows) < batch:
            break
    return sent


def _mine(row: OutgoingEmail, token: str) -> QuerySet[OutgoingEmail]:
    return OutgoingEmail.objects.filter(pk=row.pk, claim_token=token)


def _deliver(row: OutgoingEmail, token: str) -> int:
    try:
        if row.kind == Kind.SIGNUP:
            row = _apply_signup(row, token)
        message = _message(row)
    except _NotCalledFor as reason:
        _mine(row, token).update(sent_at=timezone.now(), skip_reason=str(reason)[:64], claimed_at=None)
        return 0
    except Exception as exc:
        _attempt_failed(row, token, exc)
        return 0
    try:
        message.send()
    except Exception as exc:
        _attempt_failed(row, token, exc)
        return 0
    _mine(row, token).update(sent_at=timezone.now(), claimed_at=None, last_error="")
    return 1


def _attempt_failed(row: OutgoingEmail, token: str, exc: Exception) -> None:
    error = f"{type(exc).__name__}: {exc}"[:2000]
    if row.attempts >= settings.OUTGOING_EMAIL_MAX_ATTEMPTS:
        logger.error("giving up on outgoing email %s after %d attempts: %s", row.pk, row.attempts, error)
        _mine(row, token).update(failed_at=timezone.now(), claimed_at=None, last_error=error)
        return
    delay = min(timedelta(seconds=30 * 2 ** max(row.attempts - 1, 0)), BACKOFF_CAP)
    logger.warning(
        "outgoing email %s failed (attempt %d), retrying in %s: %s", row.pk, row.attempts, delay, error
    )
    _mine(row, token).update(available_at=timezone.now() + delay, claimed_at=None, last_error=error)


def _apply_signup(row: OutgoingEmail, token: str) -> OutgoingEmail:
    """Apply a stored signup and turn the row into the email it calls for, in one transaction."""
    from subscribers.services import SignupOutcome, subscriber_signup

    data = row.payload
    with transaction.atomic():
        if not _mine(row, token).exists():
            raise _NotCalledFor("claimed by another worker")
        outcome = subscriber_signup(
            email=data["email"],
            topics=Topic.objects.filter(slug__in=data.get("topics", []), is_active=True),
            interests=data.get("interests", ""),
            frequency=data.get("frequency", Subscriber.Frequency.DAILY),
            weekday=int(data.get("weekday", 0)),
            arxiv_categories=data.get("arxiv_categories", []),
            followed_authors=data.get("followed_authors", []),
            liked_papers=data.get("liked_papers", []),
            ip=data.get("ip"),
            user_agent=data.get("user_agent", ""),
            signup_at=parse_datetime(data["signup_at"]) if data.get("signup_at") else None,
        )
        kind = {
            SignupOutcome.CONFIRMATION_SENT: Kind.CONFIRMATION,
            SignupOutcome.MANAGE_LINK_SENT: Kind.MANAGE_LINK,
        }.get(outcome.action)
        subscriber_id = outcome.subscriber.pk if outcome.subscriber else None
        # The signup now lives on the subscriber; the row keeps no copy of it.
        _mine(row, token).update(kind=kind or Kind.SIGNUP, subscriber_id=subscriber_id, payload={})
    if kind is None:
        raise _NotCalledFor(f"signup {outcome.action}")
    row.kind, row.subscriber, row.payload = kind, outcome.subscriber, {}
    return row


def _topic_names(subscriber: Subscriber) -> list[str]:
    return list(subscriber.topics.order_by("name").values_list("name", flat=True))


def _message(row: OutgoingEmail) -> EmailMessage:
    subscriber = row.subscriber
    if subscriber is None:
        raise _NotCalledFor("subscriber gone")
    subscriber.refresh_from_db()
    product = settings.PRODUCT_NAME
    context: dict[str, Any]
    attachment = None
    if row.kind == Kind.CONFIRMATION:
        if subscriber.status != Status.PENDING:
            raise _NotCalledFor(f"subscriber {subscriber.status}")
        name, subject = "confirm_subscription", f"Confirm your {product} subscription"
        context = {
            "confirm_url": links.confirm_url(subscriber=subscriber),
            "expires_days": tokens.CONFIRM_MAX_AGE.days,
        }
    elif row.kind == Kind.MANAGE_LINK:
        if subscriber.status not in (Status.ACTIVE, Status.PAUSED):
            raise _NotCalledFor(f"subscriber {subscriber.status}")
        name, subject, context = "manage_link", f"Your {product} preferences", {}
    elif row.kind == Kind.DATA_LINK:
        name, subject = "data_link", f"Download or delete your {product} data"
        context = {
            "data_url": links.data_url(subscriber_id=subscriber.pk, token_version=subscriber.token_version),
            "expires_minutes": int(tokens.DATA_MAX_AGE.total_seconds() // 60),
        }
    elif row.kind == Kind.DATA_EXPORT:
        from subscribers.services import subscriber_export

        filename = f"{product.lower()}-my-data.json"
        name, subject, context = "data_export", f"Your {product} data", {"filename": filename}
        body = json.dumps(subscriber_export(subscriber=subscriber), cls=DjangoJSONEncoder, indent=2)
        attachment = (filename, body, "application/json")
    else:
        raise ValueError(f"unknown outgoing email kind {row.kind!r}")
    link_values = links.email_links(subscriber_id=subscriber.pk, token_version=subscriber.token_version)
    message: EmailMessage = build_email(
        name=name,
        to=subscriber.email,
        subject=subject,
        context={"subscriber": subscriber, "topics": _topic_names(subscriber), **link_values, **context},
        headers=links.list_headers(unsubscribe_url=link_values["unsubscribe_url"]),
    )
    if attachment:
        message.attach(*attachment)
    return message


def outgoing_emails_purge(*, older_than_days: int = 7) -> int:
    """Forget emails sent, skipped or given up on more than ``older_than_days`` ago."""
    cutoff = timezone.now() - timedelta(days=older_than_days)
    deleted, _per_model = OutgoingEmail.objects.filter(
        Q(sent_at__lt=cutoff) | Q(failed_at__lt=cutoff)
    ).delete()
    return deleted
