"""Bounces and complaints from ESP tracking webhooks suppress addresses, each event once."""

import json
from datetime import UTC, datetime

import anymail.urls
import pytest
from anymail.signals import AnymailTrackingEvent, EventType, RejectReason, tracking

from subscribers.models import Subscriber, SuppressionEvent
from tests.subscribers.conftest import basic_auth
from tests.subscribers.factories import SubscriberFactory

pytestmark = pytest.mark.django_db

POSTMARK_URL = "/anymail/postmark/tracking/"
SECRET = "hooks:correct-horse-battery"


def send_event(event_type, recipient, *, event_id, esp_event=None, reject_reason=None, mta_response=None):
    event = AnymailTrackingEvent(
        event_type=event_type,
        event_id=event_id,
        recipient=recipient,
        timestamp=datetime(2026, 11, 20, 8, 0, tzinfo=UTC),
        reject_reason=reject_reason,
        mta_response=mta_response,
        esp_event=esp_event,
    )
    tracking.send(sender=object, event=event, esp_name="Postmark")


@pytest.mark.parametrize(
    ("event_type", "reject_reason"),
    [
        (EventType.BOUNCED, RejectReason.BOUNCED),
        (EventType.COMPLAINED, RejectReason.SPAM),
        (EventType.REJECTED, RejectReason.BLOCKED),
        (EventType.UNSUBSCRIBED, RejectReason.UNSUBSCRIBED),
    ],
)
def test_hard_events_suppress_at_once(active, event_type, reject_reason):
    send_event(event_type, active.email, event_id=f"ev-{event_type}", reject_reason=reject_reason)
    active.refresh_from_db()
    assert active.status == Subscriber.Status.SUPPRESSED
    assert active.suppressed_at is not None
    assert event_type in active.suppression_reason
    event = SuppressionEvent.objects.get()
    assert (event.event_id, event.email, event.esp, event.subscriber) == (
        f"ev-{event_type}",
        active.email,
        "Postmark",
        active,
    )


def test_recipient_is_matched_without_regard_to_case(active):
    send_event(EventType.COMPLAINED, active.email.upper(), event_id="c1")
    active.refresh_from_db()
    assert active.status == Subscriber.Status.SUPPRESSED


def soft_bounce(recipient, event_id):
    send_event(
        EventType.BOUNCED,
        recipient,
        event_id=event_id,
        reject_reason=RejectReason.BOUNCED,
        esp_event={"RecordType": "Bounce", "Type": "SoftBounce"},
        mta_response="smtp;452 4.2.2 Mailbox full",
    )


def test_three_soft_bounces_in_a_row_suppress(active):
    soft_bounce(active.email, "s1")
    soft_bounce(active.email, "s2")
    active.refresh_from_db()
    assert (active.status, active.soft_bounce_count) == (Subscriber.Status.ACTIVE, 2)
    soft_bounce(active.email, "s3")
    active.refresh_from_db()
    assert active.status == Subscriber.Status.SUPPRESSED
    assert active.suppression_reason == "3 soft bounces in a row"


def test_a_delivery_between_soft_bounces_resets_the_count(active):
    soft_bounce(active.email, "s1")
    soft_bounce(active.email, "s2")
    send_event(EventType.DELIVERED, active.email, event_id=None)
    soft_bounce(active.email, "s3")
    active.refresh_from_db()
    assert (active.status, active.soft_bounce_count) == (Subscriber.Status.ACTIVE, 1)


def test_the_same_event_is_never_counted_twice(active):
    for _ in range(3):
        soft_bounce(active.email, "same-id")
    active.refresh_from_db()
    assert (active.status, active.soft_bounce_count) == (Subscriber.Status.ACTIVE, 1)
    assert SuppressionEvent.objects.count() == 1


def test_events_without_an_id_are_deduplicated_by_their_facts(active):
    for _ in range(3):
        send_event(EventType.BOUNCED, active.email, event_id=None, mta_response="421 4.7.0 try later")
    active.refresh_from_db()
    assert active.soft_bounce_count == 1


def test_opens_clicks_and_deferrals_change_nothing(active):
    for event_type in (EventType.OPENED, EventType.CLICKED, EventType.DEFERRED, EventType.QUEUED):
        send_event(event_type, active.email, event_id=f"x-{event_type}")
    active.refresh_from_db()
    assert (active.status, active.soft_bounce_count) == (Subscriber.Status.ACTIVE, 0)
    assert not SuppressionEvent.objects.exists()


def test_event_for_an_unknown_address_is_recorded_without_a_subscriber(active):
    send_event(EventType.BOUNCED, "stranger@example.net", event_id="u1")
    event = SuppressionEvent.objects.get()
    assert event.subscriber is None
    active.refresh_from_db()
    assert active.status == Subscriber.Status.ACTIVE


def test_suppressed_addresses_do_not_receive_a_second_suppression(active):
    send_event(EventType.BOUNCED, active.email, event_id="b1")
    active.refresh_from_db()
    first = active.suppressed_at
    send_event(EventType.COMPLAINED, active.email, event_id="c2")
    active.refresh_from_db()
    assert active.suppressed_at == first
    assert SuppressionEvent.objects.count() == 2


# --- The real webhook: Postmark payloads through anymail's view ---------------------


def postmark_bounce(
    email, *, bounce_id=4323372036854775807, kind="HardBounce", details="smtp;550 5.1.1 unknown"
):
    return {
        "RecordType": "Bounce",
        "ID": bounce_id,
        "Type": kind,
        "TypeCode": 1 if kind == "HardBounce" else 4096,
        "Name": "Hard bounce" if kind == "HardBounce" else "Soft bounce",
        "Tag": "digest",
        "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
        "Metadata": {},
        "ServerID": 23,
        "MessageStream": "outbound",
        "Description": "The server was unable to deliver your message (ex: unknown user, mailbox not found).",
        "Details": details,
        "Email": email,
        "From": "digest@paperboy.example.org",
        "BouncedAt": "2026-11-20T08:00:00Z",
        "DumpAvailable": False,
        "Inactive": True,
        "CanActivate": True,
        "Subject": "Your digest",
    }


def post_to_postmark(client, payload, *, credentials=SECRET):
    headers = {"HTTP_AUTHORIZATION": basic_auth(credentials)} if credentials else {}
    return client.post(POSTMARK_URL, data=json.dumps(payload), content_type="application/json", **headers)


@pytest.fixture
def webhook_secret(settings):
    settings.ANYMAIL = {**settings.ANYMAIL, "WEBHOOK_SECRET": SECRET}
    settings.ESP_TRACKING_WEBHOOK = "postmark"


ANYMAIL_ROUTES = sorted(str(pattern.pattern) for pattern in anymail.urls.urlpatterns)


@pytest.mark.parametrize("route", ANYMAIL_ROUTES)
def test_only_the_configured_esps_tracking_webhook_answers(client, settings, route):
    """Mounted but unconfigured, six of these answered 500 to anyone, without credentials."""
    settings.ANYMAIL = {**settings.ANYMAIL, "WEBHOOK_SECRET": SECRET}
    settings.ESP_TRACKING_WEBHOOK = "postmark"
    url = "/anymail/" + route.replace("<str:webhook_id>", "x")
    for credentials in (None, SECRET):
        headers = {"HTTP_AUTHORIZATION": basic_auth(credentials)} if credentials else {}
        response = client.post(url, data="{}", content_type="application/json", **headers)
        if route == "postmark/tracking/":
            expected = {400, 401, 403} if credentials is None else {200, 400}
            assert response.status_code in expected, response.status_code
        else:
            assert response.status_code == 404, (route, response.status_code)


def test_no_webhook_answers_without_an_esp_backend(client, settings):
    settings.ANYMAIL = {**settings.ANYMAIL, "WEBHOOK_SECRET": SECRET}
    settings.ESP_TRACKING_WEBHOOK = ""
    response = post_to_postmark(client, postmark_bounce("a@example.org"))
    assert response.status_code == 404


def test_the_tracking_webhook_follows_email_backend():
    """ESP_TRACKING_WEBHOOK defaults to the ESP of EMAIL_BACKEND, in a fresh process."""

    from tests.support import run_python

    probe = (
        "import django; django.setup(); from django.conf import settings as s; print(s.ESP_TRACKING_WEBHOOK)"
    )
    seen = {}
    for backend in ("anymail.backends.amazon_ses.EmailBackend", "mail.backends.OutboxEmailBackend"):
        result = run_python(probe, check=True, EMAIL_BACKEND=backend, DATABASE_URL=None)
        seen[backend] = result.stdout.strip()
    assert seen == {
        "anymail.backends.amazon_ses.EmailBackend": "amazon_ses",
        "mail.backends.OutboxEmailBackend": "",
    }


def test_postmark_hard_bounce_webhook_suppresses(client, webhook_secret, active):
    response = post_to_postmark(client, postmark_bounce(active.email))
    assert response.status_code == 200
    active.refresh_from_db()
    assert active.status == Subscriber.Status.SUPPRESSED
    assert SuppressionEvent.objects.get().event_id == "4323372036854775807"


def test_postmark_spam_complaint_webhook_suppresses(client, webhook_secret, active):
    payload = postmark_bounce(active.email, bounce_id=77, kind="SpamComplaint")
    payload["RecordType"] = "SpamComplaint"
    assert post_to_postmark(client, payload).status_code == 200
    active.refresh_from_db()
    assert active.status == Subscriber.Status.SUPPRESSED
    assert SuppressionEvent.objects.get().event_type == EventType.COMPLAINED


def test_postmark_retried_webhook_counts_once(client, webhook_secret, active):
    payload = postmark_bounce(active.email, bounce_id=501, kind="SoftBounce", details="smtp;452 4.2.2 full")
    for _ in range(3):
        assert post_to_postmark(client, payload).status_code == 200
    active.refresh_from_db()
    assert (active.status, active.soft_bounce_count) == (Subscriber.Status.ACTIVE, 1)


def test_postmark_three_soft_bounces_suppress(client, webhook_secret, active):
    for bounce_id in (601, 602, 603):
        payload = postmark_bounce(
            active.email, bounce_id=bounce_id, kind="SoftBounce", details="smtp;452 4.2.2"
        )
        assert post_to_postmark(client, payload).status_code == 200
    active.refresh_from_db()
    assert active.status == Subscriber.Status.SUPPRESSED


@pytest.mark.parametrize("credentials", [None, "hooks:wrong", "other:correct-horse-battery"])
def test_webhook_without_the_secret_is_refused_and_changes_nothing(
    client, webhook_secret, active, credentials
):
    response = post_to_postmark(client, postmark_bounce(active.email), credentials=credentials)
    assert response.status_code in (400, 401, 403)
    active.refresh_from_db()
    assert active.status == Subscriber.Status.ACTIVE
    assert not SuppressionEvent.objects.exists()


def test_pending_signup_whose_confirmation_bounces_is_suppressed(client, webhook_secret):
    pending = SubscriberFactory(status=Subscriber.Status.PENDING)
    post_to_postmark(client, postmark_bounce(pending.email, bounce_id=9))
    pending.refresh_from_db()
    assert pending.status == Subscriber.Status.SUPPRESSED
