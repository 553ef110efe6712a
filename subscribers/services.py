"""Writes about subscribers: signup, confirmation, preferences, leaving, suppression.

Every function takes keyword-only arguments. Emails go through the outbox
(subscribers/outbox.py): a row written in the same transaction, sent by a
worker, so a rolled-back change never sends mail and a committed one always does.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from anymail.signals import AnymailTrackingEvent, EventType
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from subscribers.addresses import normalize_email
from subscribers.follows import clean_arxiv_categories, clean_author_names
from subscribers.models import DeletionRecord, OutgoingEmail, Subscriber, SuppressionEvent
from subscribers.outbox import outgoing_email_queue, outgoing_emails_queue
from subscribers.selectors import subscriber_get_by_email

if TYPE_CHECKING:
    from digest.models import Topic

    # A topic, or its primary key.
    TopicRef = Topic | int

logger = logging.getLogger(__name__)

Status = Subscriber.Status
SOFT_BOUNCE_LIMIT = 3
USER_AGENT_MAX = 512


# --- Signup and confirmation -----------------------------------------------------------


@dataclass(frozen=True)
class SignupOutcome:
    CONFIRMATION_SENT = "confirmation_sent"
    MANAGE_LINK_SENT = "manage_link_sent"
    IGNORED = "ignored"

    action: str
    subscriber: Subscriber | None


def _clip(user_agent: str | None) -> str:
    return (user_agent or "")[:USER_AGENT_MAX]


def subscriber_signup_request(
    *,
    email: str,
    topics: Iterable[Topic],
    interests: str,
    frequency: str,
    weekday: int,
    ip: str | None,
    user_agent: str | None,
    arxiv_categories: Iterable[str] = (),
    followed_authors: Iterable[str] = (),
    liked_papers: Iterable[str] = (),
) -> OutgoingEmail:
    """Take a signup from the public form, deciding nothing yet.

    The signup is stored as it was submitted, one INSERT whoever the address
    belongs to, and applied by the outbox worker (``subscriber_signup``). The
    request therefore does the same work, takes the same time and gives the
    same answer for new, pending, active, suppressed and unsubscribed addresses.
    Unknown arXiv categories or unusable author names raise ValidationError
    here, before anything is stored.
    """
    payload = {
        "email": normalize_email(email),
        "topics": sorted(topic.slug for topic in topics),
        "interests": interests,
        "frequency": frequency,
        "weekday": weekday,
        **_follows(arxiv_categories=arxiv_categories, followed_authors=followed_authors),
        "liked_papers": list(liked_papers),
        "ip": ip,
        "user_agent": _clip(user_agent),
        "signup_at": timezone.now().isoformat(),
    }
    with transaction.atomic():
        return outgoing_email_queue(kind=OutgoingEmail.Kind.SIGNUP, payload=payload)


def subscriber_signup(
    *,
    email: str,
    topics: Iterable[TopicRef],
    interests: str,
    frequency: str,
    weekday: int,
    ip: str | None,
    user_agent: str | None,
    digest_size: int | None = None,
    liked_papers: list[str] | None = None,
    arxiv_categories: Iterable[str] = (),
    followed_authors: Iterable[str] = (),
    signup_at: datetime | None = None,
) -> SignupOutcome:
    """Apply a signup; the caller sends the email the outcome names.

    A new, pending or unsubscribed address gets (another) confirmation email. An
    active or paused address gets a link to its preference centre instead and
    nothing changes, so the form never reveals who is subscribed. A suppressed
    address (bounced or complained) gets no email at all.

    Unknown arXiv categories or unusable author names raise ValidationError
    before anything is written.
    """
    email = normalize_email(email)
    topics = list(topics)
    now = signup_at or timezone.now()
    signup = {
        "signup_at": now,
        "signup_ip": ip,
        "signup_user_agent": _clip(user_agent),
    }
    preferences = {
        "interests": interests,
        "frequency": frequency,
        "weekday": weekday,
        **_follows(arxiv_categories=arxiv_categories, followed_authors=followed_authors),
    }
    if digest_size is not None:
        preferences["digest_size"] = digest_size
    if liked_papers is not None:
        preferences["liked_papers"] = list(liked_papers)

    for _attempt in range(2):
        try:
            with transaction.atomic():
                subscriber = subscriber_get_by_email(email=email, for_update=True)
                if subscriber is None:
                    subscriber = Subscriber.objects.create(
                        email=email, status=Status.PENDING, **preferences, **signup
                    )
                    subscriber.topics.set(topics)
                    return SignupOutcome(SignupOutcome.CONFIRMATION_SENT, subscriber)
                if subscriber.status in (Status.ACTIVE, Status.PAUSED):
                    return SignupOutcome(SignupOutcome.MANAGE_LINK_SENT, subscriber)
                if subscriber.status == Status.SUPPRESSED:
                    logger.info("signup for suppressed subscriber %s ignored", subscriber.pk)
                    return SignupOutcome(SignupOutcome.IGNORED, subscriber)
                # Pending or unsubscribed: a fresh signup restarts double opt-in.
                for field, value in {**preferences, **signup}.items():
                    setattr(subscriber, field, value)
                subscriber.status = Status.PENDING
                subscriber.confirmed_at = None
                subscriber.confirm_ip = None
                subscriber.confirm_user_agent = ""
                subscriber.unsubscribed_at = None
                subscriber.unsubscribe_reason = ""
                subscriber.save()
                subscriber.topics.set(topics)
                return SignupOutcome(SignupOutcome.CONFIRMATION_SENT, subscriber)
        except IntegrityError:
            # Two signups for the same new address raced; the loser retries
            # and finds the winner's row.
            continue
    raise RuntimeError("signup could not be stored")


@dataclass(frozen=True)
class NewSubscriber:
    """One reader an admin adds: by hand, or as a line of an imported list."""

    email: str
    topics: tuple[TopicRef, ...] = ()
    interests: str = ""
    frequency: str = Subscriber.Frequency.DAILY
    weekday: int = 0
    arxiv_categories: tuple[str, ...] = ()
    followed_authors: tuple[str, ...] = ()


def subscriber_add(
    *,
    email: str,
    topics: Iterable[TopicRef],
    interests: str = "",
    frequency: str = Subscriber.Frequency.DAILY,
    weekday: int = 0,
    confirmed: bool = False,
    consent_source: str = "",
    arxiv_categories: Iterable[str] = (),
    followed_authors: Iterable[str] = (),
) -> Subscriber:
    """Add a subscriber as an admin. Confirmed ones skip the double opt-in email;
    `consent_source` records where their consent was given (kept as proof)."""
    person = NewSubscriber(
        email, tuple(topics), interests, frequency, weekday, tuple(arxiv_categories), tuple(followed_authors)
    )
    return subscribers_add(people=[person], confirmed=confirmed, consent_source=consent_source)[0]


def subscribers_add(
    *, people: Sequence[NewSubscriber], confirmed: bool = False, consent_source: str = ""
) -> list[Subscriber]:
    """Add many subscribers as an admin, in one transaction and a few bulk queries.
    Unconfirmed ones get the double opt-in email once the transaction commits."""
    follows = [
        _follows(arxiv_categories=person.arxiv_categories, followed_authors=person.followed_authors)
        for person in people
    ]
    now = timezone.now()
    with transaction.atomic():
        created = Subscriber.objects.bulk_create(
            [
                Subscriber(
                    email=normalize_email(person.email),
                    status=Status.ACTIVE if confirmed else Status.PENDING,
                    interests=person.interests,
                    frequency=person.frequency,
                    weekday=person.weekday,
                    **person_follows,
                    signup_at=now,
                    signup_user_agent="added by an admin",
                    confirmed_at=now if confirmed else None,
                    confirm_user_agent="added by an admin" if confirmed else "",
                    consent_source=consent_source,
                )
                for person, person_follows in zip(people, follows, strict=True)
            ],
            batch_size=1000,
        )
        links = Subscriber.topics.through
        links.objects.bulk_create(
            [
                links(subscriber_id=subscriber.pk, topic_id=getattr(topic, "pk", topic))
                for subscriber, person in zip(created, people, strict=True)
                for topic in dict.fromkeys(person.topics)
            ],
            batch_size=5000,
        )
        if not confirmed:
            outgoing_emails_queue(
                kind=OutgoingEmail.Kind.CONFIRMATION, subscriber_ids=[subscriber.pk for subscriber in created]
            )
    return created


def subscriber_confirm(*, subscriber: Subscriber, ip: str | None, user_agent: str | None) -> bool:
    """Confirm a pending signup. False (and nothing changes) if it was not pending."""
    changed = Subscriber.objects.filter(pk=subscriber.pk, status=Status.PENDING).update(
        status=Status.ACTIVE,
        confirmed_at=timezone.now(),
        confirm_ip=ip,
        confirm_user_agent=_clip(user_agent),
        soft_bounce_count=0,
        updated_at=timezone.now(),
    )
    subscriber.refresh_from_db()
    return bool(changed)


def subscriber_resend_confirmation(*, subscriber: Subscriber) -> bool:
    if subscriber.status != Status.PENDING:
        return False
    with transaction.atomic():
        outgoing_email_queue(kind=OutgoingEmail.Kind.CONFIRMATION, subscriber_id=subscriber.pk)
    return True


# --- Preferences ---------------------------------------------------------------------


def _follows(*, arxiv_categories: Iterable[str], followed_authors: Iterable[str]) -> dict[str, list[str]]:
    """Checked and tidied category and author lists; ValidationError names what is wrong."""
    return {
        "arxiv_categories": clean_arxiv_categories(arxiv_categories),
        "followed_authors": clean_author_names(followed_authors),
    }


def subscriber_update_preferences(
    *,
    subscriber: Subscriber,
    topics: Iterable[TopicRef],
    interests: str,
    frequency: str,
    weekday: int,
    digest_size: int | None = None,
    liked_papers: list[str] | None = None,
    show_trending: bool | None = None,
    with_abstracts: bool | None = None,
    arxiv_categories: Iterable[str] | None = None,
    followed_authors: Iterable[str] | None = None,
) -> Subscriber:
    """Save a reader's choices. Category and author lists left as None stay as they are;
    bad ones raise ValidationError and nothing changes."""
    follows = _follows(
        arxiv_categories=subscriber.arxiv_categories if arxiv_categories is None else arxiv_categories,
        followed_authors=subscriber.followed_authors if followed_authors is None else followed_authors,
    )
    with transaction.atomic():
        subscriber.interests = interests
        subscriber.frequency = frequency
        subscriber.weekday = weekday
        subscriber.arxiv_categories = follows["arxiv_categories"]
        subscriber.followed_authors = follows["followed_authors"]
        fields = ["interests", "frequency", "weekday", "arxiv_categories", "followed_authors", "updated_at"]
        if digest_size is not None:
            subscriber.digest_size = digest_size
            fields.append("digest_size")
        if show_trending is not None:
            subscriber.show_trending = show_trending
            fields.append("show_trending")
        refit = liked_papers is not None and list(liked_papers) != list(subscriber.liked_papers or [])
        if liked_papers is not None:
            subscriber.liked_papers = list(liked_papers)
            fields.append("liked_papers")
        if with_abstracts is not None:
            subscriber.with_abstracts = with_abstracts
            fields.append("with_abstracts")
        subscriber.save(update_fields=fields)
        subscriber.topics.set(list(topics))
        if refit:
            _queue_model_fit(subscriber.pk)
    return subscriber


def _queue_model_fit(subscriber_id: int) -> None:
    """Liked papers are examples for the reader's learned model: refit it once this is committed."""
    from digest.tasks import reader_model_fit_task

    transaction.on_commit(lambda: reader_model_fit_task.delay(subscriber_id))


def _transition(subscriber: Subscriber, *, from_statuses: Iterable[str], **changes: Any) -> bool:
    changed = Subscriber.objects.filter(pk=subscriber.pk, status__in=list(from_statuses)).update(
        updated_at=timezone.now(), **changes
    )
    subscriber.refresh_from_db()
    return bool(changed)


def subscriber_pause(*, subscriber: Subscriber) -> bool:
    """Stop digests for now; the pause's start is kept for the catch-up digest."""
    return _transition(
        subscriber,
        from_statuses=[Status.ACTIVE],
        status=Status.PAUSED,
        paused_at=timezone.now(),
        resumed_at=None,
    )


def subscriber_resume(*, subscriber: Subscriber) -> bool:
    """Start digests again. paused_at stays, so the next digest can catch up on the pause
    (digest.compose.digest_window)."""
    return _transition(
        subscriber, from_statuses=[Status.PAUSED], status=Status.ACTIVE, resumed_at=timezone.now()
    )


def subscriber_unsubscribe(*, subscriber: Subscriber, reason: str) -> bool:
    """Stop all mail. Idempotent: False when already unsubscribed or suppressed."""
    return _transition(
        subscriber,
        from_statuses=[Status.PENDING, Status.ACTIVE, Status.PAUSED],
        status=Status.UNSUBSCRIBED,
        unsubscribed_at=timezone.now(),
        unsubscribe_reason=reason[:64],
    )


def subscriber_resubscribe(*, subscriber: Subscriber, ip: str | None, user_agent: str | None) -> bool:
    """Undo an unsubscribe from a link in the reader's own mail.

    The signed link proves the reader controls the mailbox, so it also counts as
    confirmation for someone who unsubscribed before confirming.
    """
    changes: dict[str, object] = {"status": Status.ACTIVE, "unsubscribed_at": None, "unsubscribe_reason": ""}
    if subscriber.confirmed_at is None:
        changes.update(confirmed_at=timezone.now(), confirm_ip=ip, confirm_user_agent=_clip(user_agent))
    return _transition(subscriber, from_statuses=[Status.UNSUBSCRIBED], **changes)


# --- Data rights -------------------------------------------------------------------


def subscriber_request_data_link(*, subscriber: Subscriber) -> None:
    """Mail the reader a short-lived link to download or delete their data."""
    with transaction.atomic():
        outgoing_email_queue(kind=OutgoingEmail.Kind.DATA_LINK, subscriber_id=subscriber.pk)


def subscriber_request_data_export(*, subscriber: Subscriber) -> None:
    """Mail the reader everything stored about them, as a JSON attachment."""
    with transaction.atomic():
        outgoing_email_queue(kind=OutgoingEmail.Kind.DATA_EXPORT, subscriber_id=subscriber.pk)


def _count_deletions(reason: str, count: int) -> None:
    if count <= 0:
        return
    record, _created = DeletionRecord.objects.get_or_create(date=timezone.localdate(), reason=reason)
    DeletionRecord.objects.filter(pk=record.pk).update(count=F("count") + count)


def subscriber_delete(*, subscriber: Subscriber) -> None:
    """Erase the person, their delivery history and their suppression events.

    Only an anonymous count per day remains. Related delivery rows are removed
    by their ON DELETE CASCADE foreign key to Subscriber.
    """
    with transaction.atomic():
        SuppressionEvent.objects.filter(Q(subscriber=subscriber) | Q(email__iexact=subscriber.email)).delete()
        subscriber.delete()
        _count_deletions(DeletionRecord.Reason.REQUEST, 1)


def subscriber_export(*, subscriber: Subscriber) -> dict[str, Any]:
    """Everything stored about a subscriber, as JSON-ready data."""

    def stamp(value: Any) -> str | None:
        return value.isoformat() if value else None

    data = {
        "email": subscriber.email,
        "status": subscriber.status,
        "topics": [{"slug": topic.slug, "name": topic.name} for topic in subscriber.topics.order_by("slug")],
        "interests": subscriber.interest_list,
        "liked_papers": list(subscriber.liked_papers or []),
        "show_trending": subscriber.show_trending,
        "arxiv_categories": list(subscriber.arxiv_categories),
        "followed_authors": list(subscriber.followed_authors),
        "frequency": subscriber.frequency,
        "weekday": subscriber.get_weekday_display() if subscriber.frequency == "weekly" else None,
        "digest_size": subscriber.digest_size,
        "with_abstracts": subscriber.with_abstracts,
        "consent": {
            "signup_at": stamp(subscriber.signup_at),
            "signup_ip": subscriber.signup_ip,
            "signup_user_agent": subscriber.signup_user_agent,
            "confirmed_at": stamp(subscriber.confirmed_at),
            "confirm_ip": subscriber.confirm_ip,
            "confirm_user_agent": subscriber.confirm_user_agent,
            "source": subscriber.consent_source,
        },
        "unsubscribed_at": stamp(subscriber.unsubscribed_at),
        "unsubscribe_reason": subscriber.unsubscribe_reason,
        "suppressed_at": stamp(subscriber.suppressed_at),
        "suppression_reason": subscriber.suppression_reason,
        "paused_at": stamp(subscriber.paused_at),
        "resumed_at": stamp(subscriber.resumed_at),
        "last_digest_at": stamp(subscriber.last_digest_at),
        "created_at": stamp(subscriber.created_at),
        "updated_at": stamp(subscriber.updated_at),
        "suppression_events": [
            {
                "event_type": event.event_type,
                "reason": event.reason,
                "esp": event.esp,
                "received_at": stamp(event.received_at),
            }
            for event in subscriber.suppression_events.order_by("received_at")
        ],
        "exported_at": stamp(timezone.now()),
    }
    # History kept by the digest app (deliveries, older ones counted per month, feedback votes).
    for relation in ("deliveries", "delivery_rollups", "feedback"):
        manager = getattr(subscriber, relation, None)
        if manager is not None:
            data[relation] = [
                {key: (stamp(value) if hasattr(value, "isoformat") else value) for key, value in row.items()}
                for row in manager.values()
            ]
    return data


def pending_subscribers_purge(*, older_than_days: int = 14) -> int:
    """Delete signups never confirmed within ``older_than_days``; returns how many."""
    cutoff = timezone.now() - timedelta(days=older_than_days)
    with transaction.atomic():
        _total, per_model = Subscriber.objects.filter(status=Status.PENDING, signup_at__lt=cutoff).delete()
        purged = per_model.get(Subscriber._meta.label, 0)
        _count_deletions(DeletionRecord.Reason.UNCONFIRMED, purged)
    if purged:
        logger.info("purged %d unconfirmed signups older than %d days", purged, older_than_days)
    return purged


# --- Suppression -----------------------------------------------------------------


def subscriber_suppress(*, subscriber: Subscriber, reason: str) -> bool:
    """Never mail this address again (bounce, complaint, admin). False if already suppressed."""
    return _transition(
        subscriber,
        from_statuses=[s for s in Status.values if s != Status.SUPPRESSED],
        status=Status.SUPPRESSED,
        suppressed_at=timezone.now(),
        suppression_reason=reason[:200],
    )


_HARD_EVENTS = {EventType.BOUNCED, EventType.COMPLAINED, EventType.REJECTED, EventType.UNSUBSCRIBED}
_SMTP_TEMPORARY = re.compile(r"^\s*(?:4\d\d\b|4\.\d{1,3}\.\d{1,3}\b)")


def _is_soft_bounce(event: AnymailTrackingEvent) -> bool:
    """A temporary failure, as far as the ESP's raw event or the SMTP reply tells."""
    raw = event.esp_event
    if isinstance(raw, Mapping):
        if raw.get("Type") == "SoftBounce":  # Postmark
            return True
        if str(raw.get("severity", "")).lower() == "temporary":  # Mailgun
            return True
        bounce = raw.get("bounce")
        if isinstance(bounce, Mapping) and bounce.get("bounceType") == "Transient":  # Amazon SES
            return True
    return bool(_SMTP_TEMPORARY.match(event.mta_response or ""))


def _event_id(event: AnymailTrackingEvent, esp_name: str, email: str) -> str:
    if event.event_id:
        return str(event.event_id)[:255]
    # Some ESPs send no id for some events; a digest of the event's facts still
    # recognises a retried webhook.
    facts = "|".join(
        str(part)
        for part in (esp_name, event.event_type, email, event.timestamp, event.message_id, event.description)
    )
    return "derived:" + hashlib.sha256(facts.encode()).hexdigest()


@dataclass(frozen=True)
class TrackingOutcome:
    IGNORED = "ignored"
    DUPLICATE = "duplicate"
    RESET = "reset"
    SOFT_BOUNCE = "soft_bounce"
    SUPPRESSED = "suppressed"

    action: str


def tracking_event_record(*, event: AnymailTrackingEvent, esp_name: str) -> TrackingOutcome:
    """Apply one ESP tracking event to the subscriber it concerns.

    Hard bounces, complaints, rejections and ESP-side unsubscribes suppress the
    address at once; soft bounces suppress it after SOFT_BOUNCE_LIMIT in a row
    (a delivery resets the count). Deferrals are ignored: the ESP retries them.
    Each counted event is stored once by its ESP event id.
    """
    if not event.recipient:
        return TrackingOutcome(TrackingOutcome.IGNORED)
    try:
        email = normalize_email(event.recipient)
    except Exception:
        email = str(event.recipient).strip()[:254]

    if event.event_type == EventType.DELIVERED:
        subscriber = subscriber_get_by_email(email=email)
        if subscriber is not None and subscriber.soft_bounce_count:
            Subscriber.objects.filter(pk=subscriber.pk).update(soft_bounce_count=0)
        return TrackingOutcome(TrackingOutcome.RESET)
    if event.event_type not in _HARD_EVENTS:
        return TrackingOutcome(TrackingOutcome.IGNORED)

    soft = event.event_type == EventType.BOUNCED and _is_soft_bounce(event)
    kind = "soft_bounce" if soft else event.event_type
    reason = ": ".join(part for part in (kind, event.reject_reason, event.description) if part)[:200]
    with transaction.atomic():
        subscriber = subscriber_get_by_email(email=email, for_update=True)
        try:
            with transaction.atomic():
                SuppressionEvent.objects.create(
                    event_id=_event_id(event, esp_name, email),
                    email=email,
                    event_type=kind,
                    reason=reason,
                    esp=esp_name[:32],
                    received_at=event.timestamp or timezone.now(),
                    subscriber=subscriber,
                )
        except IntegrityError:
            return TrackingOutcome(TrackingOutcome.DUPLICATE)
        if subscriber is None:
            return TrackingOutcome(TrackingOutcome.IGNORED)
        if soft:
            Subscriber.objects.filter(pk=subscriber.pk).update(soft_bounce_count=F("soft_bounce_count") + 1)
            subscriber.refresh_from_db()
            if subscriber.soft_bounce_count < SOFT_BOUNCE_LIMIT:
                return TrackingOutcome(TrackingOutcome.SOFT_BOUNCE)
            reason = f"{SOFT_BOUNCE_LIMIT} soft bounces in a row"
        subscriber_suppress(subscriber=subscriber, reason=reason)
    return TrackingOutcome(TrackingOutcome.SUPPRESSED)
