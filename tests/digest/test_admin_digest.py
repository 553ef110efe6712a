import re
from html import unescape

import pytest
from django.core import mail
from django.utils import timezone

from digest.models import Delivery, DigestRun
from tests.digest.builders import EDITION, make_paper, make_reader

pytestmark = pytest.mark.django_db


@pytest.fixture
def ada(db):
    make_paper(1, topics={"reasoning": 0.9}, title='<script>alert("t")</script> Proof search', upvotes=9)
    return make_reader("ada@example.org", ["reasoning"])


def test_runs_page_shows_chart_and_actions(admin_client):
    DigestRun.objects.create(edition=timezone.now().date(), status="succeeded", sent_count=40, failed_count=2)
    response = admin_client.get("/admin/digest/digestrun/")
    assert response.status_code == 200
    body = response.content.decode()
    assert "40 digests sent, 2 failed" in body
    assert "Start a run now" in body and "Preview a digest" in body


def test_start_run_now_runs_the_night(admin_client, ada, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post("/admin/digest/digestrun/start/", {"edition": EDITION.isoformat()})
    assert response.status_code == 302
    run = DigestRun.objects.get()
    assert run.status == DigestRun.Status.SUCCEEDED
    assert [m.to for m in mail.outbox] == [["ada@example.org"]]


def test_preview_shows_html_text_and_reasons_escaped(admin_client, ada):
    response = admin_client.get(
        "/admin/digest/digestrun/preview/", {"subscriber": ada.email, "edition": EDITION}
    )
    body = response.content.decode()
    assert response.status_code == 200
    assert "Why each paper was chosen" in body
    assert "Topic: Reasoning" in body
    assert "<script>alert" not in body  # the hostile title is text everywhere
    srcdoc = unescape(re.search(r'srcdoc="([^"]*)"', body).group(1))
    assert "&lt;script&gt;alert" in srcdoc
    assert Delivery.objects.count() == 0  # a preview sends and stores nothing
    assert mail.outbox == []


def test_test_send_goes_to_the_given_address_with_inert_links(admin_client, ada, client):
    response = admin_client.post(
        f"/admin/digest/digestrun/preview/?subscriber={ada.email}&edition={EDITION}",
        {"subscriber": ada.email, "edition": EDITION, "to": "colleague@example.org"},
    )
    assert response.status_code == 302
    [message] = mail.outbox
    assert message.to == ["colleague@example.org"]
    assert message.subject.startswith("[Test] ")
    unsubscribe = message.extra_headers["List-Unsubscribe"].strip("<>")
    path = "/" + unsubscribe.split("/", 3)[3]
    assert client.post(path).status_code == 400
    ada.refresh_from_db()
    assert ada.status == "active"


def test_resend_failed_delivery(admin_client, ada, django_capture_on_commit_callbacks):
    run = DigestRun.objects.create(edition=EDITION, status="succeeded", due_count=1, failed_count=1)
    delivery = Delivery.objects.create(
        subscriber=ada, edition=EDITION, run=run, status="failed", error="ESP down"
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            "/admin/digest/delivery/", {"action": "resend", "_selected_action": [delivery.id]}, follow=True
        )
    assert b"Queued 1 failed deliveries" in response.content
    delivery.refresh_from_db()
    run.refresh_from_db()
    assert delivery.status == "sent"
    assert (run.sent_count, run.failed_count, run.status) == (1, 0, "succeeded")
    assert len(mail.outbox) == 1


def test_subscriber_page_shows_delivery_history_and_preview_link(admin_client, ada):
    Delivery.objects.create(subscriber=ada, edition=EDITION, status="sent", subject="3 papers for Tue")
    response = admin_client.get(f"/admin/subscribers/subscriber/{ada.id}/change/")
    body = response.content.decode()
    assert "Delivery history" in body
    assert "3 papers for Tue" in body
    assert "Preview the digest they would get today" in body


def test_uncertain_deliveries_show_on_runs_run_page_and_delivery_filter(admin_client, ada):
    run = DigestRun.objects.create(edition=EDITION, status="succeeded", sent_count=3, uncertain_count=7)
    Delivery.objects.create(
        subscriber=ada,
        edition=EDITION,
        run=run,
        status=Delivery.Status.UNCERTAIN,
        error="the ESP may have it",
    )
    listing = admin_client.get("/admin/digest/digestrun/").content.decode()
    assert "column-uncertain_count" in listing and ">7<" in listing
    page = admin_client.get(f"/admin/digest/digestrun/{run.id}/change/").content.decode()
    assert "Uncertain count" in page
    filtered = admin_client.get("/admin/digest/delivery/", {"status__exact": "uncertain"}).content.decode()
    assert "Uncertain (the ESP may have it)" in filtered and "ada@example.org" in filtered
