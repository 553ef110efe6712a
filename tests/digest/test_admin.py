import json
import threading
from datetime import date
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from digest.background import wait_for_background
from digest.models import Paper, PaperTopic, Topic
from digest.services import IngestResult, papers_load_file

pytestmark = pytest.mark.django_db

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "sources"
CHANGELIST = reverse("admin:digest_paper_changelist")


@pytest.fixture
def papers():
    papers_load_file(path=FIXTURES / "hf_api_2026.json")
    return {p.arxiv_id: p for p in Paper.objects.all()}


def test_changelist_filters_search_and_sorts_by_upvotes(admin_client, papers):
    response = admin_client.get(CHANGELIST, {"o": "-3"})  # upvotes column, descending
    assert response.status_code == 200
    shown = [row.arxiv_id for row in response.context["cl"].result_list]
    assert shown == ["2603.02210", "2603.01877", "2603.00415"]
    content = response.content.decode()
    assert "&lt;script&gt;alert" in content and "<script>alert" not in content  # scraped text is escaped

    for params, expected in [
        ({"q": "tool use"}, {"2603.01877"}),
        ({"topic": "image-generation"}, {"2603.02210"}),
        ({"source": "hf"}, set(papers)),
        ({"source": "arxiv"}, set()),
        ({"featured_on__day": "4", "featured_on__month": "3", "featured_on__year": "2026"}, set(papers)),
    ]:
        response = admin_client.get(CHANGELIST, params)
        assert response.status_code == 200, params
        assert {row.arxiv_id for row in response.context["cl"].result_list} == expected, params


def test_hidden_and_pinned_filters(admin_client, papers):
    Paper.objects.filter(arxiv_id="2603.01877").update(hidden=True)
    response = admin_client.get(CHANGELIST, {"hidden__exact": "1"})
    assert [row.arxiv_id for row in response.context["cl"].result_list] == ["2603.01877"]
    response = admin_client.get(CHANGELIST, {"pinned__exact": "1"})
    assert list(response.context["cl"].result_list) == []


@pytest.mark.parametrize(
    ("action", "field", "value"),
    [
        ("hide", "hidden", True),
        ("pin", "pinned", True),
        ("unhide", "hidden", False),
        ("unpin", "pinned", False),
    ],
)
def test_curation_actions(admin_client, papers, action, field, value):
    Paper.objects.update(**{field: not value})
    ids = [papers["2603.01877"].pk, papers["2603.02210"].pk]
    response = admin_client.post(CHANGELIST, {"action": action, "_selected_action": ids}, follow=True)
    assert response.status_code == 200
    assert set(Paper.objects.filter(**{field: value}).values_list("pk", flat=True)) == set(ids)


def test_retag_action_keeps_curator_tags(admin_client, papers):
    paper = papers["2603.02210"]
    PaperTopic.objects.filter(paper=paper).delete()
    PaperTopic.objects.create(
        paper=paper, topic=Topic.objects.get(slug="safety"), score=0.7, set_by_curator=True
    )
    admin_client.post(CHANGELIST, {"action": "retag", "_selected_action": [paper.pk]})
    slugs = set(PaperTopic.objects.filter(paper=paper).values_list("topic__slug", flat=True))
    assert {"safety", "image-generation"} <= slugs


@pytest.fixture
def with_broker(eager_celery):
    """Production mode: tasks go to a broker instead of running in this process."""
    eager_celery.conf.task_always_eager = False
    return eager_celery


def test_fetch_now_get_shows_a_form_and_post_queues_the_task_after_commit(
    admin_client, monkeypatch, django_capture_on_commit_callbacks, with_broker
):
    queued = []
    monkeypatch.setattr("digest.tasks.fetch_papers_task.delay", lambda *args: queued.append(args))
    url = reverse("admin:digest_paper_fetch_now")
    response = admin_client.get(url)
    assert response.status_code == 200 and b"Fetch or load" in response.content
    assert queued == []
    assert b"Fetch now" in admin_client.get(CHANGELIST).content

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = admin_client.post(url, {"day": "2026-11-21", "source": "arxiv"})
    assert response.status_code == 302 and response.url == CHANGELIST
    assert len(callbacks) == 1
    assert queued == [("2026-11-21", "arxiv")]


def test_fetch_now_rejects_a_bad_form(admin_client, monkeypatch):
    queued = []
    monkeypatch.setattr("digest.tasks.fetch_papers_task.delay", lambda *args: queued.append(args))
    response = admin_client.post(reverse("admin:digest_paper_fetch_now"), {"day": "soon", "source": "ftp"})
    assert response.status_code == 200 and queued == []


def test_fetch_now_offers_the_newest_day_with_papers(admin_client, papers):
    form = admin_client.get(reverse("admin:digest_paper_fetch_now")).context["form"]
    assert form["day"].value() == date(2026, 3, 4)


def test_fetch_now_stores_an_uploaded_saved_response_at_once(admin_client):
    upload = SimpleUploadedFile("saved.json", (FIXTURES / "hf_api_2026.json").read_bytes())
    response = admin_client.post(
        reverse("admin:digest_paper_fetch_now"), {"day": "2026-11-21", "source": "hf", "saved_file": upload}
    )
    assert response.status_code == 302 and response.url == CHANGELIST
    assert Paper.objects.count() == 3
    assert "Stored saved.json: hf" in admin_client.get(CHANGELIST).content.decode()


@pytest.mark.parametrize(
    ("name", "content", "error"),
    [
        ("page.html", b"<html><body>No papers here</body></html>", "Nothing was stored."),
        ("api.json", b'{"not": "a list"}', "Nothing was stored."),
        ("feed.atom", b"<?xml version='1.0'?><feed", "Nothing was stored."),
    ],
)
def test_fetch_now_rejects_an_unrecognised_upload_and_stores_nothing(admin_client, name, content, error):
    upload = SimpleUploadedFile(name, content)
    response = admin_client.post(
        reverse("admin:digest_paper_fetch_now"), {"day": "2026-11-21", "source": "hf", "saved_file": upload}
    )
    assert response.status_code == 200
    errors = response.context["form"].errors["saved_file"]
    assert errors[0].startswith(error) and name in errors[0]
    assert Paper.objects.count() == 0


def test_fetch_now_upload_with_one_bad_item_stores_nothing_of_a_broken_file(admin_client):
    items = json.loads((FIXTURES / "hf_api_2026.json").read_text())
    broken = json.dumps(items)[:-40]  # cut off mid-item
    upload = SimpleUploadedFile("cut.json", broken.encode())
    response = admin_client.post(
        reverse("admin:digest_paper_fetch_now"), {"day": "2026-11-21", "source": "hf", "saved_file": upload}
    )
    assert "Nothing was stored." in response.context["form"].errors["saved_file"][0]
    assert Paper.objects.count() == 0


def test_fetch_now_refuses_an_upload_over_the_size_cap(admin_client, monkeypatch):
    monkeypatch.setattr("digest.sources.http.MAX_RESPONSE_BYTES", 100)
    upload = SimpleUploadedFile("big.json", b"[" + b" " * 200 + b"]")
    response = admin_client.post(
        reverse("admin:digest_paper_fetch_now"), {"day": "2026-11-21", "source": "hf", "saved_file": upload}
    )
    assert "over the 100-byte cap. Nothing was stored." in response.context["form"].errors["saved_file"][0]


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_embedded_fetch_now_runs_in_the_background(admin_client, monkeypatch):
    fetched = []
    release = threading.Event()

    def fetch(*, day, source, **options):
        release.wait(30)
        fetched.append((day, source))
        return IngestResult(source=source)

    monkeypatch.setattr("digest.services.papers_fetch", fetch)
    url = reverse("admin:digest_paper_fetch_now")
    response = admin_client.post(url, {"day": "2026-11-21", "source": "hf"})
    assert response.status_code == 302
    assert fetched == []  # answered before the fetch finished
    release.set()
    wait_for_background()
    assert fetched == [(date(2026, 11, 21), "hf")]


def test_fetch_days_again_action_queues_each_featured_day(
    admin_client, papers, monkeypatch, django_capture_on_commit_callbacks, with_broker
):
    queued = []
    monkeypatch.setattr("digest.tasks.fetch_papers_task.delay", lambda *args: queued.append(args))
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(
            CHANGELIST, {"action": "fetch_days_again", "_selected_action": [p.pk for p in papers.values()]}
        )
    assert queued == [("2026-03-04", "hf")]


def _change_form_data(response) -> dict:
    """POST data equal to what the change form shows, management forms included."""
    data = {}
    for field in response.context["adminform"].form:
        value = field.value()
        if value is not None:
            data[field.html_name] = "on" if value is True else value
        if value is False:
            data.pop(field.html_name, None)
    for inline in response.context["inline_admin_formsets"]:
        formset = inline.formset
        for field in formset.management_form:
            data[field.html_name] = field.value()
        for form in formset.forms:
            for field in form:
                value = field.value()
                if value not in (None, False):
                    data[field.html_name] = value
    return data


def test_topic_inline_edits_become_curator_tags_and_deleting_an_auto_tag_suppresses_it(admin_client, papers):
    paper = papers["2603.01877"]
    url = reverse("admin:digest_paper_change", args=[paper.pk])
    response = admin_client.get(url)
    assert response.status_code == 200
    data = _change_form_data(response)
    rows = list(paper.paper_topics.order_by("pk"))
    agents_index = next(i for i, row in enumerate(rows) if row.topic.slug == "agents")
    prefix = response.context["inline_admin_formsets"][0].formset.prefix
    data[f"{prefix}-{agents_index}-DELETE"] = "on"
    new = len(rows)
    data[f"{prefix}-{new}-topic"] = Topic.objects.get(slug="safety").pk
    data[f"{prefix}-{new}-score"] = "0.9"
    data["note"] = "Curated"
    response = admin_client.post(url, data)
    assert response.status_code == 302, response.context["errors"] if response.context else ""

    paper.refresh_from_db()
    assert paper.note == "Curated"
    agents = PaperTopic.objects.get(paper=paper, topic__slug="agents")
    assert (agents.score, agents.set_by_curator) == (0, True)
    assert PaperTopic.objects.get(paper=paper, topic__slug="safety").set_by_curator

    from digest.services import papers_retag

    papers_retag(paper_ids=[paper.pk])
    assert PaperTopic.objects.get(paper=paper, topic__slug="agents").score == 0


def test_topic_admin_lists_paper_counts_and_edits_phrases(admin_client, papers):
    response = admin_client.get(reverse("admin:digest_topic_changelist"))
    assert response.status_code == 200
    counts = {topic.slug: topic.paper_count for topic in response.context["cl"].result_list}
    assert counts["image-generation"] >= 1 and counts["robotics"] == 0

    topic = Topic.objects.get(slug="robotics")
    url = reverse("admin:digest_topic_change", args=[topic.pk])
    response = admin_client.get(url)
    assert b'name="phrases"' in response.content
    response = admin_client.post(
        url,
        {"name": "Robotics", "description": topic.description, "phrases": "robot\nbudget", "is_active": "on"},
        follow=True,
    )
    assert response.status_code == 200
    topic.refresh_from_db()
    assert topic.slug == "robotics" and topic.phrase_list == ["robot", "budget"]
    admin_client.post(
        reverse("admin:digest_topic_changelist"), {"action": "retag_all", "_selected_action": [topic.pk]}
    )
    assert PaperTopic.objects.filter(topic=topic, paper=papers["2603.01877"]).exists()


def test_paper_change_form_shows_links(admin_client, papers):
    response = admin_client.get(reverse("admin:digest_paper_change", args=[papers["2603.01877"].pk]))
    assert b"https://arxiv.org/abs/2603.01877" in response.content
    assert date(2026, 3, 4) == Paper.objects.get(arxiv_id="2603.01877").featured_on
