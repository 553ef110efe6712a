"""The outbox: a signup's email is written with it, survives a broker outage, is claimed
once, retried with backoff, and the signup request does the same work for every address."""

import logging
import re
from datetime import timedelta

import pytest
from django.core import mail
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from kombu.exceptions import OperationalError

from subscribers import outbox
from subscribers.models import OutgoingEmail, Subscriber
from subscribers.tasks import drain_outgoing_email
from tests.subscribers.factories import SubscriberFactory

pytestmark = pytest.mark.django_db

SIGNUP = "/"


def form(email: str) -> dict:
    return {"email": email, "topics": ["reasoning"], "interests": "", "frequency": "daily", "weekday": "0"}


@pytest.fixture
def broker_down(monkeypatch):
    """Queueing the drain task fails as it does when Redis refuses connections."""

    def refuse(*args, **kwargs):
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(drain_outgoing_email, "apply_async", refuse)


def test_signups_while_the_broker_is_down_are_all_mailed_once_it_drains(client, commit, broker_down, caplog):
    with caplog.at_level(logging.WARNING, logger="subscribers.outbox"), commit():
        for n in range(3):
            assert client.post(SIGNUP, form(f"reader{n}@example.org")).status_code == 302
    assert mail.outbox == []
    assert OutgoingEmail.objects.filter(sent_at__isnull=True).count() == 3
    assert "periodic drain will send it" in caplog.text

    # The periodic beat task (or the next successful queueing) sends what waited.
    assert outbox.outgoing_email_drain() == 3
    assert sorted(m.to[0] for m in mail.outbox) == [f"reader{n}@example.org" for n in range(3)]
    assert all("/confirm/" in m.body for m in mail.outbox)
    assert Subscriber.objects.filter(status=Subscriber.Status.PENDING).count() == 3
    assert outbox.outgoing_email_drain() == 0  # nothing twice


def test_the_beat_schedule_drains_the_outbox(settings):
    entry = settings.CELERY_BEAT_SCHEDULE["drain-outgoing-email"]
    assert entry["task"] == drain_outgoing_email.name
    assert entry["schedule"] == settings.OUTGOING_EMAIL_DRAIN_EVERY


def test_a_rolled_back_signup_leaves_no_email(client, commit, monkeypatch):
    from django.db import transaction

    with pytest.raises(RuntimeError), commit(), transaction.atomic():
        outbox.outgoing_email_queue(kind=OutgoingEmail.Kind.SIGNUP, payload={"email": "x@example.org"})
        raise RuntimeError("the request failed after writing")
    assert not OutgoingEmail.objects.exists()
    assert mail.outbox == []


def signup_row(email: str) -> OutgoingEmail:
    return OutgoingEmail.objects.create(
        kind=OutgoingEmail.Kind.SIGNUP,
        payload={**form(email), "topics": ["reasoning"], "ip": "203.0.113.5", "user_agent": "UA"},
    )


def test_a_row_claimed_by_one_worker_is_not_claimed_by_another():
    signup_row("ada@example.org")
    token, rows = outbox._claim(10)
    assert len(rows) == 1
    assert outbox._claim(10)[1] == []
    # A worker that went silent past the claim timeout loses its claim.
    OutgoingEmail.objects.update(claimed_at=timezone.now() - outbox.CLAIM_TIMEOUT - timedelta(seconds=1))
    other_token, again = outbox._claim(10)
    assert [row.pk for row in again] == [rows[0].pk] and other_token != token
    # The first worker's late write-back no longer applies.
    assert outbox._mine(rows[0], token).update(sent_at=timezone.now()) == 0


def test_two_workers_that_read_the_same_rows_claim_each_row_once():
    rows = [signup_row(f"r{n}@example.org") for n in range(3)]
    ids = [row.pk for row in rows]
    now = timezone.now()
    # Both workers read the same waiting ids; the first UPDATE wins them all.
    first = outbox._take(ids, token="worker-a", now=now)
    second = outbox._take(ids, token="worker-b", now=now)
    assert sorted(row.pk for row in first) == ids and second == []
    assert set(OutgoingEmail.objects.values_list("claim_token", "attempts")) == {("worker-a", 1)}


def test_a_failed_send_is_kept_with_its_error_and_retried_later(monkeypatch):
    signup_row("ada@example.org")

    def esp_down(self, fail_silently=False):
        raise ConnectionError("ESP unreachable")

    monkeypatch.setattr("django.core.mail.EmailMessage.send", esp_down)
    assert outbox.outgoing_email_drain() == 0
    row = OutgoingEmail.objects.get()
    assert row.kind == OutgoingEmail.Kind.CONFIRMATION  # the signup itself was applied once
    assert (row.attempts, row.sent_at, row.failed_at) == (1, None, None)
    assert "ESP unreachable" in row.last_error
    assert row.available_at > timezone.now()
    assert outbox.outgoing_email_drain() == 0  # backing off
    monkeypatch.undo()
    OutgoingEmail.objects.update(available_at=timezone.now())
    assert outbox.outgoing_email_drain() == 1
    row.refresh_from_db()
    assert row.sent_at and row.attempts == 2 and not row.last_error
    assert Subscriber.objects.count() == 1
    assert [m.to for m in mail.outbox] == [["ada@example.org"]]


def test_after_the_last_attempt_the_row_is_marked_failed(monkeypatch, settings):
    settings.OUTGOING_EMAIL_MAX_ATTEMPTS = 2
    signup_row("ada@example.org")
    monkeypatch.setattr("django.core.mail.EmailMessage.send", lambda self, fail_silently=False: 1 / 0)
    for _ in range(2):
        OutgoingEmail.objects.update(available_at=timezone.now())
        outbox.outgoing_email_drain()
    row = OutgoingEmail.objects.get()
    assert row.failed_at and row.attempts == 2 and "ZeroDivisionError" in row.last_error
    OutgoingEmail.objects.update(available_at=timezone.now())
    assert outbox.outgoing_email_drain() == 0
    assert OutgoingEmail.objects.get().attempts == 2


def test_an_email_no_longer_called_for_is_skipped_not_sent(commit):
    reader = SubscriberFactory(status=Subscriber.Status.PENDING)
    OutgoingEmail.objects.create(kind=OutgoingEmail.Kind.CONFIRMATION, subscriber=reader)
    Subscriber.objects.filter(pk=reader.pk).update(status=Subscriber.Status.ACTIVE)
    assert outbox.outgoing_email_drain() == 0
    row = OutgoingEmail.objects.get()
    assert row.sent_at and row.skip_reason == "subscriber active"
    assert mail.outbox == []


def test_a_stored_signup_keeps_no_copy_once_applied():
    row = signup_row("ada@example.org")
    outbox.outgoing_email_drain()
    row.refresh_from_db()
    assert row.payload == {} and row.subscriber.email == "ada@example.org"
    assert row.subscriber.signup_ip == "203.0.113.5"


def test_old_rows_are_purged():
    old = signup_row("old@example.org")
    outbox.outgoing_email_drain()
    OutgoingEmail.objects.filter(pk=old.pk).update(sent_at=timezone.now() - timedelta(days=8))
    waiting = OutgoingEmail.objects.create(kind=OutgoingEmail.Kind.SIGNUP, payload={})
    assert outbox.outgoing_emails_purge() == 1
    assert list(OutgoingEmail.objects.values_list("pk", flat=True)) == [waiting.pk]


# --- No way to tell who is subscribed --------------------------------------------------


CLASSES = {
    "new": None,
    "pending": Subscriber.Status.PENDING,
    "active": Subscriber.Status.ACTIVE,
    "paused": Subscriber.Status.PAUSED,
    "unsubscribed": Subscriber.Status.UNSUBSCRIBED,
    "suppressed": Subscriber.Status.SUPPRESSED,
}


def _shape(sql: str) -> str:
    # Statements with their literals removed: the same shape means the same work.
    return re.sub(r"'[^']*'|\b\d+\b|\"s\d+_x\d+\"", "?", sql)


def test_signup_request_does_the_same_work_for_every_kind_of_address(client, broker_down):
    shapes = {}
    for kind, status in CLASSES.items():
        email = f"{kind}@example.org"
        if status:
            SubscriberFactory(email=email, status=status)
        with CaptureQueriesContext(connection) as queries:
            response = client.post(SIGNUP, form(email))
        assert response.status_code == 302
        shapes[kind] = [_shape(query["sql"]) for query in queries.captured_queries]
        assert not any("subscribers_subscriber" in sql for sql in shapes[kind]), kind
    assert len({tuple(shape) for shape in shapes.values()}) == 1, shapes
    assert OutgoingEmail.objects.filter(kind=OutgoingEmail.Kind.SIGNUP).count() == len(CLASSES)


def test_the_worker_decides_which_email_each_address_gets(client, commit):
    for kind, status in CLASSES.items():
        if status:
            SubscriberFactory(email=f"{kind}@example.org", status=status)
    with commit():
        for kind in CLASSES:
            client.post(SIGNUP, form(f"{kind}@example.org"))
    got = {m.to[0].split("@")[0]: m.subject for m in mail.outbox}
    assert got == {
        "new": "Confirm your Paperboy subscription",
        "pending": "Confirm your Paperboy subscription",
        "unsubscribed": "Confirm your Paperboy subscription",
        "active": "Your Paperboy preferences",
        "paused": "Your Paperboy preferences",
    }
    skipped = OutgoingEmail.objects.get(subscriber__email="suppressed@example.org")
    assert skipped.skip_reason == "signup ignored" and skipped.sent_at
