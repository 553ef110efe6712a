"""Reads about subscribers: lookups by address or token, and admin statistics."""

from collections import Counter
from datetime import date, datetime, time, timedelta
from typing import Any

from django.db.models import Count, Value
from django.db.models.functions import Lower, TruncDate
from django.utils import timezone

from subscribers import tokens
from subscribers.models import Subscriber


def subscriber_get_by_email(*, email: str, for_update: bool = False) -> Subscriber | None:
    """The subscriber with this address, ignoring case (uses the Lower(email) index)."""
    queryset = Subscriber.objects.alias(email_lower=Lower("email")).filter(email_lower=Lower(Value(email)))
    if for_update:
        queryset = queryset.select_for_update()
    return queryset.first()


_READERS = {
    "confirm": tokens.read_confirm_token,
    "manage": tokens.read_manage_token,
    "unsubscribe": tokens.read_unsubscribe_token,
    "data": tokens.read_data_token,
}


def subscriber_from_token(*, token: str, purpose: str) -> Subscriber:
    """The subscriber a link belongs to.

    Raises tokens.InvalidToken when the token is tampered, truncated, expired,
    made for another purpose, or revoked (the subscriber was deleted or their
    token_version bumped).
    """
    payload = _READERS[purpose](token)
    subscriber = Subscriber.objects.filter(pk=payload.subscriber_id).first()
    if subscriber is None or subscriber.token_version != payload.token_version:
        raise tokens.InvalidToken("revoked")
    return subscriber


def subscriber_status_counts() -> dict[str, int]:
    counts = dict.fromkeys(Subscriber.Status.values, 0)
    for row in Subscriber.objects.values("status").annotate(n=Count("id")).order_by():
        counts[row["status"]] = row["n"]
    return counts


def subscriber_growth(*, days: int = 30, today: date | None = None) -> list[dict[str, Any]]:
    """New signups and confirmations per day for the last ``days`` days, oldest first."""
    today = today or timezone.localdate()
    start = today - timedelta(days=days - 1)
    start_at = timezone.make_aware(datetime.combine(start, time.min))

    def per_day(field: str) -> dict[date, int]:
        rows = (
            Subscriber.objects.filter(**{f"{field}__gte": start_at})
            .annotate(day=TruncDate(field))
            .values("day")
            .annotate(n=Count("id"))
            .order_by()
        )
        return {row["day"]: row["n"] for row in rows}

    signups = per_day("created_at")
    confirmations = per_day("confirmed_at")
    return [
        {
            "date": start + timedelta(days=offset),
            "signups": signups.get(start + timedelta(days=offset), 0),
            "confirmations": confirmations.get(start + timedelta(days=offset), 0),
        }
        for offset in range(days)
    ]


def followed_arxiv_categories() -> dict[str, int]:
    """arXiv category -> how many active or paused readers follow it, most followed first.

    Paused readers count: their catch-up digest covers the days they were away."""
    counts: Counter[str] = Counter()
    rows = (
        Subscriber.objects.filter(status__in=[Subscriber.Status.ACTIVE, Subscriber.Status.PAUSED])
        .exclude(arxiv_categories=[])
        .values_list("arxiv_categories", flat=True)
    )
    for categories in rows.iterator(chunk_size=5000):
        counts.update(category for category in categories or () if isinstance(category, str))
    return dict(counts.most_common())
