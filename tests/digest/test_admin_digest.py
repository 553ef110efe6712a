import re
import threading
from html import unescape

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from digest.background import wait_for_background
from digest.models import Delivery, DigestRun
from digest.sources.base import SourceError
from digest.tasks import nightly_run
from tests.digest.builders import EDITION, make_paper, make_reader
from tests.digest.sending_support import run_night

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


@pytest.fixture
def with_broker(eager_celery):
    """Production mode: tasks go to a broker instead of running in this process."""
    eager_celery.conf.task_always_eager = False
    return eager_celery


def test_start_run_queues_the_task_on_commit_and_shows_the_run_while_it_waits(
    admin_client, ada, with_broker, monkeypatch, django_capture_on_commit_callbacks
):
    queued = []
    monkeypatch.setattr("digest.tasks.nightly_run.delay", lambda *args: queued.append(args))
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post("/admin/digest/digestrun/start/", {"edition": EDITION.isoformat()})
    run = DigestRun.objects.get()
    assert response.status_code == 302
    assert response.url == reverse("admin:digest_digestrun_progress", args=[run.pk])
    assert queued == [(EDITION.isoformat(), False, None, run.pk)]  # None: every source
    assert run.status == DigestRun.Status.RUNNING  # the request did not do the run's work

    page = admin_client.get(response.url).content.decode()
    assert 'http-equiv="refresh"' in page
    assert "Fetching papers" in page
    assert "was started" not in page

    with_broker.conf.task_always_eager = True  # now the worker runs it
    with django_capture_on_commit_callbacks(execute=True):
        nightly_run(*queued[0])
    run.refresh_from_db()
    assert run.status == DigestRun.Status.SUCCEEDED
    page = admin_client.get(response.url).content.decode()
    assert 'http-equiv="refresh"' not in page
    assert re.search(r'data-count="sent">\s*1<', page)
    assert [m.to for m in mail.outbox] == [["ada@example.org"]]


@pytest.fixture
def blocked_fetch(monkeypatch):
    """A fetch that waits until the test lets it fail, as an offline source does after its retries."""
    release = threading.Event()

    def fetch(name, day, **options):
        release.wait(30)
        raise SourceError(name, "https://huggingface.co/api/daily_papers", "connection refused")

    monkeypatch.setattr("digest.sources.fetch_with_fallback", fetch)
    return release


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_embedded_start_returns_while_the_run_works_and_its_failure_shows_as_failed(
    admin_client, blocked_fetch
):
    make_reader("ada@example.org", ["reasoning"])
    response = admin_client.post(
        "/admin/digest/digestrun/start/", {"edition": EDITION.isoformat(), "fetch": "on"}, follow=True
    )
    run = DigestRun.objects.get()
    # The answer came while the background run was still fetching.
    assert run.status == DigestRun.Status.RUNNING
    page = response.content.decode()
    assert 'id="run-status">Running<' in page and 'http-equiv="refresh"' in page

    blocked_fetch.set()
    wait_for_background()
    run.refresh_from_db()
    assert run.status == DigestRun.Status.FAILED
    page = admin_client.get(reverse("admin:digest_digestrun_progress", args=[run.pk])).content.decode()
    assert 'id="run-status">Failed<' in page
    assert "connection refused" in page
    assert 'http-equiv="refresh"' not in page
    assert "messagelist" not in page  # no green "started" over a failed run
    listing = admin_client.get("/admin/digest/digestrun/").content.decode()
    assert "connection refused" in listing  # the error is a column of the list too
    assert Delivery.objects.count() == 0


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_run_that_crashes_in_the_background_is_marked_failed(admin_client, monkeypatch):
    def crash(**kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr("digest.services.runs.papers_fetch_for_run", crash)
    admin_client.post("/admin/digest/digestrun/start/", {"edition": EDITION.isoformat(), "fetch": "on"})
    wait_for_background()
    run = DigestRun.objects.get()
    assert run.status == DigestRun.Status.FAILED
    assert run.errors == ["The run stopped with an error: RuntimeError: disk full"]


def test_preview_shows_html_text_and_reasons_escaped(admin_client, ada):
    response = admin_client.get(
        "/admin/digest/digestrun/preview/", {"subscriber": ada.email, "edition": EDITION}
    )
    body = response.content.decode()
    assert response.status_code == 200
    assert "Why each paper was chosen" in body
    assert "Topic Reasoning" in body
    assert "<script>alert" not in body  # the hostile title is text everywhere
    srcdoc = unescape(re.search(r'srcdoc="([^"]*)"', body).group(1))
    assert "&lt;script&gt;alert" in srcdoc
    assert Delivery.objects.count() == 0  # a preview sends and stores nothing
    assert mail.outbox == []


def test_test_send_goes_to_the_given_address_with_inert_links(admin_client, ada, client, settings):
    settings.DIGEST_TEST_SEND_ALLOWED = ["colleague@example.org"]
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
    assert f"subscriber={ada.pk}&amp;edition={EDITION.isoformat()}" in body  # the last one they got


def test_preview_of_a_sent_edition_shows_the_digest_that_went_out(admin_client, ada):
    make_paper(2, topics={"reasoning": 0.8}, title="Second proof", upvotes=3)
    run_night()
    delivery = Delivery.objects.get()
    response = admin_client.get(
        "/admin/digest/digestrun/preview/", {"subscriber": ada.pk, "edition": EDITION}
    )
    body = response.content.decode()
    assert 'data-outcome="sent"' in body
    assert "Sent to ada@example.org" in body
    assert "relevance gate" not in body
    assert f"<h2>{delivery.subject}</h2>".replace("<script>", "&lt;script&gt;")[:40] in body
    assert reverse("admin:digest_delivery_change", args=[delivery.pk]) in body


def test_preview_names_the_cause_when_nothing_would_go(admin_client, db):
    reader = make_reader("idle@example.org", [], status="paused")
    response = admin_client.get(
        "/admin/digest/digestrun/preview/", {"subscriber": reader.email, "edition": EDITION}
    )
    body = response.content.decode()
    assert 'data-outcome="nothing"' in body
    assert "They paused their digest." in body


def test_preview_picker_searches_instead_of_listing_every_address(admin_client, ada):
    for n in range(5):
        make_reader(f"someone{n}@example.org", ["video"])
    body = admin_client.get("/admin/digest/digestrun/preview/").content.decode()
    assert "someone0@example.org" not in body  # no <option> per subscriber
    assert 'data-ajax--url="/admin/autocomplete/"' in body
    found = admin_client.get(
        "/admin/autocomplete/",
        {"term": "someone3", "app_label": "digest", "model_name": "delivery", "field_name": "subscriber"},
    ).json()
    assert [row["text"] for row in found["results"]] == ["someone3@example.org"]


def test_preview_with_an_unknown_address_says_so(admin_client, db):
    response = admin_client.get(
        "/admin/digest/digestrun/preview/", {"subscriber": "ghost@example.org", "edition": EDITION}
    )
    assert "No subscriber with the address ghost@example.org." in response.content.decode()


def test_runs_list_links_each_status_to_its_progress_and_shows_errors(admin_client, db):
    run = DigestRun.objects.create(edition=EDITION, status="failed", errors=["note: 3 skipped", "hf is down"])
    body = admin_client.get("/admin/digest/digestrun/").content.decode()
    assert reverse("admin:digest_digestrun_progress", args=[run.pk]) in body
    assert "hf is down" in body and "3 skipped" not in body
    assert "Paperboy admin" in body and "Django administration" not in body
    page = admin_client.get(reverse("admin:digest_digestrun_progress", args=[run.pk])).content.decode()
    assert "hf is down" in page and "3 skipped" in page
    # The run page's link to its edition's deliveries is a filter the list accepts (not a 302 to ?e=1).
    deliveries = admin_client.get("/admin/digest/delivery/", {"edition": EDITION.isoformat()})
    assert deliveries.status_code == 200 and "cl" in deliveries.context


def test_progress_of_an_unknown_run_is_404_and_starting_needs_change_permission(
    client, db, django_user_model
):
    viewer = django_user_model.objects.create_user("viewer", password="pw-long-enough-1", is_staff=True)
    from django.contrib.auth.models import Permission

    viewer.user_permissions.add(Permission.objects.get(codename="view_digestrun"))
    client.force_login(viewer)
    assert client.get(reverse("admin:digest_digestrun_progress", args=[999])).status_code == 404
    assert client.post("/admin/digest/digestrun/start/", {"edition": EDITION.isoformat()}).status_code == 403
    assert DigestRun.objects.count() == 0


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
    assert "column-uncertain" in listing and ">7<" in listing
    page = admin_client.get(f"/admin/digest/digestrun/{run.id}/change/").content.decode()
    assert "Uncertain count" in page
    filtered = admin_client.get("/admin/digest/delivery/", {"status__exact": "uncertain"}).content.decode()
    assert "Uncertain (the ESP may have it)" in filtered and "ada@example.org" in filtered
