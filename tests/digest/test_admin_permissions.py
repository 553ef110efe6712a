"""The digest admin's actions each need their own permission; previews carry no live links."""

import re
from html import unescape

import pytest
from django.contrib.auth.models import Permission, User
from django.core import mail
from django.test import Client

from digest.models import Delivery, DigestRun
from tests.digest.builders import EDITION, make_paper, make_reader

pytestmark = pytest.mark.django_db

PREVIEW = "/admin/digest/digestrun/preview/"
START = "/admin/digest/digestrun/start/"
DELIVERIES = "/admin/digest/delivery/"


@pytest.fixture
def ada(db):
    make_paper(1, topics={"reasoning": 0.9}, upvotes=9)
    return make_reader("ada@example.org", ["reasoning"])


def staff(*codenames: str, email: str = "") -> Client:
    user = User.objects.create_user(f"staff-{len(codenames)}-{email or 'x'}", email=email, is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    client = Client()
    client.force_login(user)
    return client


def preview_query(ada) -> dict:
    return {"subscriber": ada.email, "edition": EDITION}


def test_staff_without_permissions_cannot_preview_start_or_send(ada, django_capture_on_commit_callbacks):
    client = staff("view_digestrun")
    assert client.get(PREVIEW, preview_query(ada)).status_code == 403
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(PREVIEW, {**preview_query(ada), "to": "x@example.org"}).status_code == 403
        assert client.get(START).status_code == 403
        assert client.post(START, {"edition": EDITION.isoformat(), "fetch": ""}).status_code == 403
    assert mail.outbox == []
    assert not DigestRun.objects.exists()


def test_change_permission_alone_no_longer_starts_a_run(ada, django_capture_on_commit_callbacks):
    client = staff("view_digestrun", "change_digestrun")
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(START, {"edition": EDITION.isoformat(), "fetch": ""}).status_code == 403
    assert not DigestRun.objects.exists()


def test_start_permission_starts_a_run(ada, django_capture_on_commit_callbacks):
    client = staff("view_digestrun", "start_digestrun")
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(START, {"edition": EDITION.isoformat(), "fetch": ""})
    assert response.status_code == 302
    assert DigestRun.objects.get().status == DigestRun.Status.SUCCEEDED


def test_preview_permission_shows_a_preview_whose_links_act_for_no_one(ada, client):
    admin = staff("view_digestrun", "preview_digest")
    response = admin.get(PREVIEW, preview_query(ada))
    assert response.status_code == 200
    page = unescape(response.content.decode())
    assert "Topic: Reasoning" in page
    paths = set(re.findall(r"https?://[^/\s\"'<>]+(/(?:manage|unsubscribe|feedback|data)/[^\s\"'<>]+)", page))
    assert any("/unsubscribe/" in p for p in paths) and any("/feedback/" in p for p in paths)
    for path in paths:
        # The reader's own links would open their preferences (200); these are dummies.
        assert client.get(path).status_code == 400, path
    assert client.post(next(p for p in paths if "/unsubscribe/" in p)).status_code == 400
    ada.refresh_from_db()
    assert ada.status == "active"


def test_preview_permission_alone_cannot_send_a_test(ada):
    client = staff("view_digestrun", "preview_digest", email="me@example.org")
    response = client.post(
        PREVIEW + "?" + f"subscriber={ada.email}&edition={EDITION}",
        {**preview_query(ada), "to": "me@example.org"},
    )
    assert response.status_code == 403
    assert mail.outbox == []


@pytest.mark.parametrize(
    ("to", "allowed", "sent"),
    [
        ("outsider@example.net", [], False),
        ("me@example.org", [], True),  # the staff user's own address
        ("ME@Example.org", [], True),
        ("team@example.org", ["team@example.org"], True),
        ("colleague@example.org", [], True),  # another active staff user
    ],
)
def test_test_send_goes_only_to_staff_or_the_allow_list(ada, settings, to, allowed, sent):
    settings.DIGEST_TEST_SEND_ALLOWED = allowed
    User.objects.create_user("colleague", email="colleague@example.org", is_staff=True)
    User.objects.create_user("reader", email="outsider@example.net", is_staff=False)
    client = staff("view_digestrun", "preview_digest", "send_test_digest", email="me@example.org")
    response = client.post(
        PREVIEW + f"?subscriber={ada.email}&edition={EDITION}", {**preview_query(ada), "to": to}
    )
    if sent:
        assert response.status_code == 302
        assert [m.to for m in mail.outbox] == [[to]]
    else:
        assert response.status_code == 200
        assert "Test copies go only to" in response.content.decode()
        assert mail.outbox == []


def failed_delivery(ada) -> Delivery:
    run = DigestRun.objects.create(edition=EDITION, status="succeeded", due_count=1, failed_count=1)
    return Delivery.objects.create(
        subscriber=ada, edition=EDITION, run=run, status="failed", error="ESP down"
    )


def test_resend_needs_its_own_permission(ada, django_capture_on_commit_callbacks):
    delivery = failed_delivery(ada)
    client = staff("view_delivery", "change_delivery")
    assert "Re-send selected" not in client.get(DELIVERIES).content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        client.post(DELIVERIES, {"action": "resend", "_selected_action": [delivery.id]})
    delivery.refresh_from_db()
    assert delivery.status == "failed"
    assert mail.outbox == []


def test_resend_permission_resends(ada, django_capture_on_commit_callbacks):
    delivery = failed_delivery(ada)
    client = staff("view_delivery", "resend_delivery")
    assert "Re-send selected" in client.get(DELIVERIES).content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        client.post(DELIVERIES, {"action": "resend", "_selected_action": [delivery.id]})
    delivery.refresh_from_db()
    assert delivery.status == "sent"
    assert [m.to for m in mail.outbox] == [["ada@example.org"]]
