"""The preference centre behind a signed link: preferences, pause, and the one-hour
data link (export, delete) it mails on request."""

import json
import re

import pytest
from django.urls import reverse

from subscribers import tokens
from subscribers.models import DeletionRecord, Subscriber, SuppressionEvent
from tests.subscribers.factories import SubscriberFactory
from tests.subscribers.helpers import assert_bad_link_page, form_data

pytestmark = pytest.mark.django_db


def manage_path(subscriber) -> str:
    return reverse(
        "subscribers:manage", args=[tokens.make_manage_token(subscriber.pk, subscriber.token_version)]
    )


def data_path(subscriber) -> str:
    return reverse("subscribers:data", args=[tokens.make_data_token(subscriber.pk, subscriber.token_version)])


def export_path(subscriber) -> str:
    return reverse(
        "subscribers:export", args=[tokens.make_data_token(subscriber.pk, subscriber.token_version)]
    )


def prefs(**overrides) -> dict:
    defaults = {
        "action": "save",
        "topics": ["video", "3d"],
        "interests": "gaussian splatting\nNeRF",
        "frequency": "weekly",
        "weekday": "2",
        "digest_size": "12",
    }
    return form_data(defaults, overrides)


def assert_refused_without_change(client, subscriber, data: dict, message: str) -> None:
    """The preference centre answers 400 naming what is wrong, and stores nothing."""
    before = Subscriber.objects.values().get(pk=subscriber.pk)
    topics = sorted(subscriber.topics.values_list("slug", flat=True))
    response = client.post(manage_path(subscriber), data)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert Subscriber.objects.values().get(pk=subscriber.pk) == before
    assert sorted(subscriber.topics.values_list("slug", flat=True)) == topics


def test_page_shows_current_preferences(client, active):
    response = client.get(manage_path(active))
    assert response.status_code == 200
    html = response.content.decode()
    assert active.email in html
    assert re.search(r'value="reasoning"[^>]*checked', html)
    assert not re.search(r'value="video"[^>]*checked', html)
    assert "speculative decoding" in html
    assert "Pause my digest" in html and "Email me a link to download or delete my data" in html
    # Export and deletion are never one click away from a long-lived link.
    assert "/data/" not in html and "export.json" not in html and 'value="delete"' not in html
    assert response["X-Robots-Tag"] == "noindex, nofollow"
    assert "no-cache" in response["Cache-Control"] or "no-store" in response["Cache-Control"]


def test_saving_preferences_updates_everything(client, active):
    path = manage_path(active)
    response = client.post(path, prefs(), follow=True)
    assert response.status_code == 200
    assert "Your preferences are saved." in response.content.decode()
    active.refresh_from_db()
    assert sorted(active.topics.values_list("slug", flat=True)) == ["3d", "video"]
    assert active.interest_list == ["gaussian splatting", "NeRF"]
    assert (active.frequency, active.weekday, active.digest_size) == ("weekly", 2, 12)
    assert active.with_abstracts is False


def test_readers_choose_abstracts_in_the_email_and_can_turn_them_off(client, active):
    path = manage_path(active)
    assert 'name="with_abstracts"' in client.get(path).content.decode()
    client.post(path, prefs(with_abstracts="on"))
    active.refresh_from_db()
    assert active.with_abstracts is True
    assert re.search(r'name="with_abstracts"[^>]*checked', client.get(path).content.decode())
    client.post(path, prefs())  # an unticked box is not sent at all
    active.refresh_from_db()
    assert active.with_abstracts is False


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"topics": ["video", "nope"]}, "is not one of our topics"),
        ({"digest_size": "16"}, "less than or equal to 15"),
        ({"digest_size": "0"}, "greater than or equal to 1"),
        ({"interests": "z" * 1001}, "at most 1000 characters"),
        ({"interests": "a\x00b"}, "Null characters are not allowed"),
        ({"frequency": "monthly"}, "Select a valid choice"),
        ({"topics": None, "interests": ""}, "Pick at least one topic"),
    ],
)
def test_bad_preferences_show_an_error_and_change_nothing(client, active, overrides, message):
    assert sorted(active.topics.values_list("slug", flat=True)) == ["efficiency", "reasoning"]
    assert_refused_without_change(client, active, prefs(**overrides), message)


def test_pause_and_resume(client, active):
    path = manage_path(active)
    response = client.post(path, {"action": "pause"}, follow=True)
    assert "Your digest is paused" in response.content.decode()
    active.refresh_from_db()
    assert active.status == Subscriber.Status.PAUSED and active.paused_at is not None
    assert active.resumed_at is None
    paused_at = active.paused_at

    response = client.post(path, {"action": "resume"}, follow=True)
    assert "your digest is on again" in response.content.decode()
    active.refresh_from_db()
    # The pause's start stays on record: the next digest catches up from it.
    assert active.status == Subscriber.Status.ACTIVE and active.paused_at == paused_at
    assert active.resumed_at is not None and active.resumed_at >= paused_at


def test_resume_when_not_paused_changes_nothing(client, active):
    response = client.post(manage_path(active), {"action": "resume"}, follow=True)
    assert "Only a paused digest can be resumed." in response.content.decode()
    active.refresh_from_db()
    assert active.status == Subscriber.Status.ACTIVE


def test_unknown_action_changes_nothing(client, active):
    before = Subscriber.objects.values().get(pk=active.pk)
    response = client.post(manage_path(active), {"action": "promote"})
    assert response.status_code == 400
    assert "Nothing was changed" in response.content.decode()
    assert Subscriber.objects.values().get(pk=active.pk) == before


def test_unsubscribe_from_the_preference_centre(client, active):
    response = client.post(manage_path(active), {"action": "unsubscribe"})
    assert response.status_code == 200
    assert "You are unsubscribed" in response.content.decode()
    active.refresh_from_db()
    assert active.status == Subscriber.Status.UNSUBSCRIBED
    assert active.unsubscribe_reason == "preference centre"


def test_export_downloads_all_data_as_json(client, active):
    active.signup_ip = "203.0.113.9"
    active.save()
    response = client.get(export_path(active))
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/json")
    assert "attachment" in response["Content-Disposition"]
    data = json.loads(response.content)
    assert data["email"] == active.email
    assert [topic["slug"] for topic in data["topics"]] == ["efficiency", "reasoning"]
    assert data["interests"] == ["speculative decoding"]
    assert data["consent"]["signup_ip"] == "203.0.113.9"
    assert data["consent"]["confirmed_at"]
    assert data["frequency"] == "daily"


def test_delete_needs_the_confirmation_box(client, active):
    response = client.post(data_path(active), {"action": "delete"})
    assert response.status_code == 400
    assert "Tick the box" in response.content.decode()
    assert Subscriber.objects.filter(pk=active.pk).exists()


def test_delete_erases_the_person_and_keeps_only_an_anonymous_count(client, active):
    SuppressionEvent.objects.create(
        event_id="e1", email=active.email, event_type="soft_bounce", subscriber=active
    )
    other = SubscriberFactory()
    path = data_path(active)
    response = client.post(path, {"action": "delete", "confirm": "on"})
    assert response.status_code == 200
    assert "Your data is deleted" in response.content.decode()
    assert not Subscriber.objects.filter(pk=active.pk).exists()
    assert not SuppressionEvent.objects.filter(email=active.email).exists()
    assert Subscriber.objects.filter(pk=other.pk).exists()
    record = DeletionRecord.objects.get()
    assert (record.reason, record.count) == ("request", 1)
    # Old links now lead to the friendly error page.
    assert client.get(path).status_code == 400
    assert client.get(manage_path(active)).status_code == 400


@pytest.mark.parametrize(
    "path", ["/manage/abc/", "/data/abc/", "/data/abc/export.json", "/manage/1-1.forged/", "/data/1-1.x.y/"]
)
def test_bad_manage_links_get_friendly_400(client, path):
    assert_bad_link_page(client.get(path))


def test_unsubscribe_token_does_not_open_the_preference_centre(client, active):
    token = tokens.make_unsubscribe_token(active.pk, active.token_version)
    assert client.get(f"/manage/{token}/").status_code == 400


def test_delivery_history_is_exported_and_erased_with_the_person(client, active):
    from datetime import date

    from digest.models import Delivery

    Delivery.objects.create(
        subscriber=active, edition=date(2026, 11, 20), status="sent", subject="Your digest"
    )
    kept = Delivery.objects.create(subscriber=SubscriberFactory(), edition=date(2026, 11, 20), status="sent")
    data = json.loads(client.get(export_path(active)).content)
    assert [(row["edition"], row["subject"]) for row in data["deliveries"]] == [("2026-11-20", "Your digest")]

    client.post(data_path(active), {"action": "delete", "confirm": "on"})
    assert list(Delivery.objects.values_list("pk", flat=True)) == [kept.pk]


def test_manage_link_no_longer_exports_or_deletes(client, active):
    manage_token = tokens.make_manage_token(active.pk, active.token_version)
    assert client.get(f"/manage/{manage_token}/export.json").status_code == 404
    assert client.get(f"/data/{manage_token}/").status_code == 400
    assert client.get(f"/data/{manage_token}/export.json").status_code == 400
    response = client.post(f"/manage/{manage_token}/", {"action": "delete", "confirm": "on"})
    assert response.status_code == 400
    assert Subscriber.objects.filter(pk=active.pk).exists()


def test_data_link_is_mailed_on_request_and_works_for_an_hour(client, active, commit, settings, monkeypatch):
    import time

    from django.core import mail

    with commit():
        response = client.post(manage_path(active), {"action": "data_link"})
    assert response.status_code == 302
    (message,) = mail.outbox
    assert message.to == [active.email]
    assert message.extra_headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    (url,) = {u for u in re.findall(r"https?://[^\s\"<>]+", message.body) if "/data/" in u}
    path = url.removeprefix(settings.SITE_URL)
    page = client.get(path)
    assert page.status_code == 200
    assert "Download my data" in page.content.decode() and "Delete my data" in page.content.decode()
    now = time.time()
    monkeypatch.setattr("django.core.signing.time.time", lambda: now + 61 * 60)
    expired = client.get(path)
    assert expired.status_code == 400
    assert "work for one hour" in expired.content.decode()


def test_data_export_is_mailed_as_an_attachment(client, active, commit):
    from django.core import mail

    with commit():
        client.post(manage_path(active), {"action": "data_export"})
    (message,) = mail.outbox
    assert message.to == [active.email]
    ((filename, content, mimetype),) = message.attachments
    assert filename == "paperboy-my-data.json" and mimetype == "application/json"
    assert json.loads(content)["email"] == active.email
