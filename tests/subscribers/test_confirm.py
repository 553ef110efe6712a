"""Double opt-in: GET shows a button and changes nothing, POST confirms once."""

import time

import pytest
from django.core import signing
from django.urls import reverse

from subscribers import tokens
from subscribers.models import Subscriber
from tests.subscribers.factories import SubscriberFactory
from tests.subscribers.helpers import assert_bad_link_page

pytestmark = pytest.mark.django_db


def confirm_path(subscriber) -> str:
    return reverse("subscribers:confirm", args=[tokens.make_confirm_token(subscriber)])


def test_get_shows_a_confirm_button_and_changes_nothing(client, pending):
    before = Subscriber.objects.values().get(pk=pending.pk)
    for _ in range(3):  # mail scanners may open the link several times
        response = client.get(confirm_path(pending))
        assert response.status_code == 200
    html = response.content.decode()
    assert '<form method="post"' in html and "Yes, send me the digest" in html
    assert response["X-Robots-Tag"] == "noindex, nofollow"
    assert Subscriber.objects.values().get(pk=pending.pk) == before


def test_post_confirms_and_records_consent(client, pending):
    response = client.post(confirm_path(pending), REMOTE_ADDR="198.51.100.4", HTTP_USER_AGENT="Safari/18")
    assert response.status_code == 200
    assert "You're in" in response.content.decode()
    pending.refresh_from_db()
    assert pending.status == Subscriber.Status.ACTIVE
    assert pending.confirmed_at is not None
    assert (pending.confirm_ip, pending.confirm_user_agent) == ("198.51.100.4", "Safari/18")


def test_confirm_post_needs_the_csrf_token_from_the_page(csrf_client, pending):
    path = confirm_path(pending)
    assert csrf_client.post(path).status_code == 403
    pending.refresh_from_db()
    assert pending.status == Subscriber.Status.PENDING
    page = csrf_client.get(path)
    token = page.context["csrf_token"]
    assert csrf_client.post(path, {"csrfmiddlewaretoken": str(token)}).status_code == 200
    pending.refresh_from_db()
    assert pending.status == Subscriber.Status.ACTIVE


def test_replayed_confirmation_says_so_and_changes_nothing(client, pending):
    path = confirm_path(pending)
    client.post(path)
    pending.refresh_from_db()
    first = Subscriber.objects.values().get(pk=pending.pk)

    again = client.post(path, REMOTE_ADDR="192.0.2.200")
    assert again.status_code == 200
    assert "already confirmed" in again.content.decode()
    assert Subscriber.objects.values().get(pk=pending.pk) == first


def test_confirm_link_of_an_unsubscribed_reader_is_refused(client):
    gone = SubscriberFactory(status=Subscriber.Status.UNSUBSCRIBED)
    response = client.post(confirm_path(gone))
    assert response.status_code == 400
    assert "cannot be used again" in response.content.decode()
    gone.refresh_from_db()
    assert gone.status == Subscriber.Status.UNSUBSCRIBED


def test_expired_confirm_link_gets_friendly_400(client, pending, monkeypatch):
    eight_days_ago = int(time.time()) - 8 * 24 * 3600
    monkeypatch.setattr(signing.TimestampSigner, "timestamp", lambda self: signing.b62_encode(eight_days_ago))
    path = confirm_path(pending)
    monkeypatch.undo()
    for method in (client.get, client.post):
        response = method(path)
        assert response.status_code == 400
        assert "expire after 7 days" in response.content.decode()
    pending.refresh_from_db()
    assert pending.status == Subscriber.Status.PENDING


@pytest.mark.parametrize(
    "mangle", [lambda t: t[:-3], lambda t: t[:8], lambda t: t[:-1] + "~", lambda t: "zz" + t]
)
def test_tampered_or_truncated_confirm_link_gets_friendly_400(client, pending, mangle):
    token = mangle(tokens.make_confirm_token(pending))
    assert_bad_link_page(client.post(f"/confirm/{token}/"))
    pending.refresh_from_db()
    assert pending.status == Subscriber.Status.PENDING


def test_unsubscribe_token_cannot_confirm(client, pending):
    token = tokens.make_unsubscribe_token(pending.pk, pending.token_version)
    assert client.post(f"/confirm/{token}/").status_code == 400
    pending.refresh_from_db()
    assert pending.status == Subscriber.Status.PENDING
