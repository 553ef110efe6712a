import csv
import io
from datetime import timedelta

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from subscribers.models import Subscriber
from tests.subscribers.factories import SubscriberFactory

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:subscribers_subscriber_changelist")


@pytest.fixture
def people(db):
    return [
        SubscriberFactory(email="a@example.org", status="active", topics=["reasoning"]),
        SubscriberFactory(email="b@example.org", status="active", frequency="weekly", topics=["video"]),
        SubscriberFactory(email="p@example.org", status="pending", topics=["agents"]),
        SubscriberFactory(email="=cmd@example.org", status="unsubscribed"),
    ]


def test_changelist_shows_counts_per_status_and_a_growth_chart(admin_client, people):
    Subscriber.objects.filter(email="a@example.org").update(created_at=timezone.now() - timedelta(days=3))
    response = admin_client.get(CHANGELIST)
    assert response.status_code == 200
    html = response.content.decode()
    assert "Active: <strong>2</strong>" in html
    assert "Pending confirmation: <strong>1</strong>" in html
    assert "Suppressed: <strong>0</strong>" in html
    assert "<svg" in html and html.count("<rect") == 60
    assert "4 signups" in html
    assert "<script" not in html.split("<svg")[1].split("</svg>")[0]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("status__exact=pending", {"p@example.org"}),
        ("frequency__exact=weekly", {"b@example.org"}),
        ("q=b%40example", {"b@example.org"}),
    ],
)
def test_changelist_filters_and_search(admin_client, people, query, expected):
    response = admin_client.get(f"{CHANGELIST}?{query}")
    assert response.status_code == 200
    shown = {obj.email for obj in response.context["cl"].result_list}
    assert shown == expected


def test_topic_filter_by_id(admin_client, people):
    from digest.models import Topic

    topic = Topic.objects.get(slug="video")
    response = admin_client.get(f"{CHANGELIST}?topics__id__exact={topic.pk}")
    assert {obj.email for obj in response.context["cl"].result_list} == {"b@example.org"}


def run_action(admin_client, action, subscribers):
    return admin_client.post(
        CHANGELIST, {"action": action, "_selected_action": [s.pk for s in subscribers]}, follow=False
    )


def test_suppress_action(admin_client, people):
    run_action(admin_client, "suppress_selected", people[:2])
    assert set(Subscriber.objects.filter(status="suppressed").values_list("email", flat=True)) == {
        "a@example.org",
        "b@example.org",
    }
    assert Subscriber.objects.get(email="a@example.org").suppression_reason == "suppressed by an admin"


def test_resend_confirmation_action_only_mails_pending(
    admin_client, people, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        run_action(admin_client, "resend_confirmation", people)
    assert [m.to for m in mail.outbox] == [["p@example.org"]]
    assert "/confirm/" in mail.outbox[0].body


def test_export_csv_action(admin_client, people):
    response = run_action(admin_client, "export_csv", people)
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [row["email"] for row in rows] == [
        "a@example.org",
        "b@example.org",
        "p@example.org",
        "'=cmd@example.org",
    ]
    assert rows[0]["topics"] == "reasoning"
    assert rows[1]["frequency"] == "weekly"


def test_subscriber_page_shows_consent_record(admin_client, people):
    response = admin_client.get(reverse("admin:subscribers_subscriber_change", args=[people[0].pk]))
    assert response.status_code == 200
    html = response.content.decode()
    assert "Consent" in html and "192.0.2.10" in html


IMPORT_URL = "/admin/subscribers/subscriber/import/"


def test_import_upload_adds_good_rows_and_lists_skipped_ones(admin_client, people, commit):
    from django.core.files.uploadedfile import SimpleUploadedFile

    existing = Subscriber.objects.first()
    text = f"email,topics\nimported@example.org,reasoning\n{existing.email},reasoning\n"
    upload = SimpleUploadedFile("list.csv", text.encode())
    with commit():
        response = admin_client.post(
            IMPORT_URL, {"file": upload, "consented": "on", "source": "conference sheet"}
        )
    page = response.content.decode()
    assert response.status_code == 200
    assert "Imported 1 subscriber(s), active (consent recorded); skipped 1." in page
    assert "already on the list" in page
    imported = Subscriber.objects.get(email="imported@example.org")
    assert imported.consent_source == "imported: conference sheet (uploaded by admin)"
    assert "Import subscribers" in admin_client.get("/admin/subscribers/subscriber/").content.decode()


def test_import_upload_with_a_bad_row_imports_nothing(admin_client, people):
    from django.core.files.uploadedfile import SimpleUploadedFile

    before = Subscriber.objects.count()
    upload = SimpleUploadedFile("list.csv", b"email,topics\nfine@example.org,reasoning\nbad,reasoning\n")
    response = admin_client.post(IMPORT_URL, {"file": upload})
    page = response.content.decode()
    assert "Nothing was imported: 1 line(s) have errors." in page
    assert "not a valid email address: &#x27;bad&#x27;" in page
    assert Subscriber.objects.count() == before


def test_import_upload_needs_a_source_for_consent(admin_client, db):
    from django.core.files.uploadedfile import SimpleUploadedFile

    upload = SimpleUploadedFile("list.csv", b"email,topics\nfine@example.org,reasoning\n")
    response = admin_client.post(IMPORT_URL, {"file": upload, "consented": "on"})
    assert "kept as proof" in response.content.decode()
    assert not Subscriber.objects.exists()
