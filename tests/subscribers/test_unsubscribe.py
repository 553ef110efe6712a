"""RFC 8058 one-click unsubscribe, the unsubscribe page, resubscribe, and the link helpers."""

from urllib.parse import urlsplit

import pytest
from django.test import Client
from django.urls import reverse

from subscribers import tokens
from subscribers.links import email_links, list_headers
from subscribers.models import Subscriber
from tests.subscribers.factories import SubscriberFactory
from tests.subscribers.helpers import assert_bad_link_page

pytestmark = pytest.mark.django_db

ONE_CLICK = {"List-Unsubscribe": "One-Click"}


def unsubscribe_path(subscriber) -> str:
    token = tokens.make_unsubscribe_token(subscriber.pk, subscriber.token_version)
    return reverse("subscribers:unsubscribe", args=[token])


def test_email_links_and_list_headers_for_a_digest(settings, active):
    links = email_links(subscriber_id=active.pk, token_version=active.token_version)
    assert set(links) == {"unsubscribe_url", "manage_url"}
    assert links["unsubscribe_url"].startswith("https://paperboy.example.org/unsubscribe/")
    assert links["manage_url"].startswith("https://paperboy.example.org/manage/")
    headers = list_headers(unsubscribe_url=links["unsubscribe_url"])
    assert headers == {
        "List-Unsubscribe": f"<{links['unsubscribe_url']}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        "List-Id": "Paperboy daily digest <daily.digest.paperboy.example.org>",
    }
    # The links resolve to this subscriber's pages.
    assert Client().get(urlsplit(links["manage_url"]).path).status_code == 200
    assert Client().get(urlsplit(links["unsubscribe_url"]).path).status_code == 200


def test_one_click_post_urlencoded_without_cookies_or_csrf_unsubscribes(csrf_client, active):
    assert not csrf_client.cookies
    response = csrf_client.post(
        unsubscribe_path(active),
        data="List-Unsubscribe=One-Click",
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 200
    assert "Location" not in response
    assert "You are unsubscribed" in response.content.decode()
    active.refresh_from_db()
    assert active.status == Subscriber.Status.UNSUBSCRIBED
    assert active.unsubscribed_at is not None
    assert active.unsubscribe_reason == "one-click"


def test_one_click_post_multipart_without_cookies_or_csrf_unsubscribes(csrf_client, active):
    response = csrf_client.post(unsubscribe_path(active), data=ONE_CLICK)  # multipart/form-data by default
    assert response.status_code == 200
    assert "Location" not in response
    active.refresh_from_db()
    assert active.status == Subscriber.Status.UNSUBSCRIBED
    assert active.unsubscribe_reason == "one-click"


def test_one_click_post_is_idempotent(csrf_client, active):
    path = unsubscribe_path(active)
    csrf_client.post(path, data=ONE_CLICK)
    active.refresh_from_db()
    first = Subscriber.objects.values().get(pk=active.pk)
    for _ in range(2):
        response = csrf_client.post(path, data=ONE_CLICK)
        assert response.status_code == 200
    assert Subscriber.objects.values().get(pk=active.pk) == first


def test_post_with_a_malformed_body_still_unsubscribes(csrf_client, active):
    response = csrf_client.post(
        unsubscribe_path(active), data=b"--broken", content_type="multipart/form-data; boundary=nope"
    )
    assert response.status_code == 200
    active.refresh_from_db()
    assert active.status == Subscriber.Status.UNSUBSCRIBED


def test_button_on_the_page_unsubscribes_too(client, active):
    response = client.post(unsubscribe_path(active))
    assert response.status_code == 200
    active.refresh_from_db()
    assert active.status == Subscriber.Status.UNSUBSCRIBED
    assert active.unsubscribe_reason == "unsubscribe page"


def test_get_shows_a_button_and_changes_nothing(client, active):
    before = Subscriber.objects.values().get(pk=active.pk)
    for _ in range(3):
        response = client.get(unsubscribe_path(active))
        assert response.status_code == 200
    html = response.content.decode()
    assert '<form method="post">' in html and ">Unsubscribe</button>" in html
    assert Subscriber.objects.values().get(pk=active.pk) == before


def test_unsubscribed_page_offers_resubscribe_and_nothing_more(csrf_client, active):
    """The unsubscribe URL is in every List-Unsubscribe header: forwarded mails, scanners
    and archives see it, so it must not lead to the preference centre or the data."""
    html = csrf_client.post(unsubscribe_path(active), data=ONE_CLICK).content.decode()
    assert "/resubscribe/" in html
    assert "/manage/" not in html and "/data/" not in html


@pytest.mark.parametrize("status", [Subscriber.Status.ACTIVE, Subscriber.Status.UNSUBSCRIBED])
def test_unsubscribe_and_resubscribe_pages_hold_no_preference_link(client, status):
    reader = SubscriberFactory(status=status)
    token = tokens.make_unsubscribe_token(reader.pk, reader.token_version)
    pages = [client.get(f"/unsubscribe/{token}/"), client.get(f"/resubscribe/{token}/")]
    if status == Subscriber.Status.UNSUBSCRIBED:
        pages.append(client.post(f"/resubscribe/{token}/"))
    for page in pages:
        assert page.status_code == 200
        html = page.content.decode()
        assert "/manage/" not in html and "/data/" not in html


def test_suppressed_reader_stays_suppressed_after_unsubscribe(csrf_client):
    bounced = SubscriberFactory(status=Subscriber.Status.SUPPRESSED)
    assert csrf_client.post(unsubscribe_path(bounced), data=ONE_CLICK).status_code == 200
    bounced.refresh_from_db()
    assert bounced.status == Subscriber.Status.SUPPRESSED


@pytest.mark.parametrize("method", ["get", "post"])
def test_tampered_unsubscribe_link_gets_friendly_400(csrf_client, active, method):
    path = unsubscribe_path(active)
    assert_bad_link_page(getattr(csrf_client, method)(path[:-6] + "XXXXX/"))
    active.refresh_from_db()
    assert active.status == Subscriber.Status.ACTIVE


def test_manage_token_cannot_unsubscribe(csrf_client, active):
    token = tokens.make_manage_token(active.pk, active.token_version)
    assert csrf_client.post(f"/unsubscribe/{token}/", data=ONE_CLICK).status_code == 400
    active.refresh_from_db()
    assert active.status == Subscriber.Status.ACTIVE


def test_resubscribe_get_changes_nothing_and_post_restores_the_digest(client, active):
    client.post(unsubscribe_path(active))
    token = tokens.make_unsubscribe_token(active.pk, active.token_version)
    path = reverse("subscribers:resubscribe", args=[token])

    page = client.get(path)
    assert page.status_code == 200
    assert "Yes, resubscribe" in page.content.decode()
    active.refresh_from_db()
    assert active.status == Subscriber.Status.UNSUBSCRIBED

    done = client.post(path)
    assert done.status_code == 200
    assert "Welcome back" in done.content.decode()
    active.refresh_from_db()
    assert active.status == Subscriber.Status.ACTIVE
    assert active.unsubscribed_at is None
    assert sorted(active.topics.values_list("slug", flat=True)) == ["efficiency", "reasoning"]


def test_resubscribe_cannot_lift_a_suppression(client):
    bounced = SubscriberFactory(status=Subscriber.Status.SUPPRESSED)
    token = tokens.make_unsubscribe_token(bounced.pk, bounced.token_version)
    response = client.post(reverse("subscribers:resubscribe", args=[token]))
    assert response.status_code == 200
    assert "We cannot send to this address" in response.content.decode()
    bounced.refresh_from_db()
    assert bounced.status == Subscriber.Status.SUPPRESSED


def test_resubscribe_with_a_bad_token_gets_friendly_400(client):
    assert client.get("/resubscribe/not-a-token/").status_code == 400
