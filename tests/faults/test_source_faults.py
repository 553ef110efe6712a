"""A paper source changes its structure or goes down overnight. When it was the
only source (or all of them fail, or DIGEST_SOURCES_REQUIRE_ALL is on) the run
stops, tells the admins, and sends nothing; otherwise the run names the failed
source, tells the admins, and sends what the other source gave."""

import functools
import json

import pytest
from django.core import mail
from django.test import TestCase
from django.urls import reverse

from digest import sources
from digest.models import Delivery, DigestRun, Paper
from digest.sources import arxiv, hf_api, hf_page
from digest.tasks import nightly_run
from tests.digest.builders import EDITION, YESTERDAY, make_paper, make_reader
from tests.digest.loopback import LoopbackServer, Reply

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(60)]

PAPER = {"id": "2611.04242", "title": "A paper that should never be stored", "upvotes": 99}

# What the source might start answering one night.
CHANGED_API = {
    "an object instead of the array": json.dumps({"papers": [{"paper": PAPER}], "next": None}),
    "items with renamed fields": json.dumps([{"entry": PAPER, "publishedOn": YESTERDAY.isoformat()}]),
    "an HTML page instead of JSON": "<!doctype html><html><body><h1>We moved!</h1></body></html>",
}
# The fallback page keeps its paper cards but drops the embedded data.
CHANGED_PAGE = """<!doctype html><html><body><main>
<article><h3><a href="/papers/2611.04242">A paper that should never be stored</a></h3></article>
<article><h3><a href="/papers/2611.04243">Another one</a></h3></article>
</main></body></html>"""


@pytest.fixture
def source_server(monkeypatch):
    """The Hugging Face API and papers page and the arXiv API, served from loopback."""
    with LoopbackServer() as server:
        monkeypatch.setitem(
            sources.FETCHERS,
            sources.SOURCE_HF_API,
            functools.partial(hf_api.fetch, base_url=f"{server.base}/api/daily_papers"),
        )
        monkeypatch.setattr(hf_page, "PAGE_URL", server.base + "/papers/date/{day}")
        monkeypatch.setattr(hf_page, "LEGACY_PAGE_URL", f"{server.base}/papers")
        monkeypatch.setitem(
            sources.FETCHERS,
            sources.SOURCE_ARXIV,
            functools.partial(
                arxiv.fetch, base_url=f"{server.base}/api/query", throttle=arxiv.Throttle(0.0), retries=0
            ),
        )
        yield server


@pytest.mark.parametrize("change", sorted(CHANGED_API))
def test_changed_source_stops_the_run_tells_admins_and_sends_nothing(change, source_server, settings):
    settings.ADMINS = [("Ops", "ops@example.org")]
    settings.DIGEST_SOURCES = ["hf"]
    make_paper(1, topics={"reasoning": 0.9}, day=EDITION.replace(day=20), title="Stored last week")
    make_reader("reader@example.org", ["reasoning"])
    source_server.on(
        "/api/daily_papers", Reply(200, CHANGED_API[change], {"Content-Type": "application/json"})
    )
    source_server.on(
        f"/papers/date/{YESTERDAY.isoformat()}", Reply(200, CHANGED_PAGE, {"Content-Type": "text/html"})
    )

    run = DigestRun.objects.get(id=nightly_run(EDITION.isoformat()))

    assert [request["path"] for request in source_server.requests][:2] == [
        "/api/daily_papers",
        f"/papers/date/{YESTERDAY.isoformat()}",
    ], "the API was tried, then the papers page"
    assert run.status == DigestRun.Status.FAILED
    assert "hf" in run.errors[-1] and "DailyPapers" in run.errors[-1]
    # Nothing planned, nothing sent, nothing stored.
    assert not Delivery.objects.exists()
    assert list(Paper.objects.values_list("title", flat=True)) == ["Stored last week"]
    (admin_mail,) = mail.outbox
    assert admin_mail.to == ["ops@example.org"]
    assert f"Digest run for {EDITION} failed" in admin_mail.subject
    assert "No digests were sent" in admin_mail.body and "DailyPapers" in admin_mail.body


# --- More than one source ------------------------------------------------------------

HF_PAPER = {
    "paper": {
        "id": "2611.05001",
        "title": "Verifier-guided search for theorem proving",
        "summary": "We search over proofs with a learned verifier.",
        "authors": [{"name": "Ada Lovelace"}],
        "upvotes": 42,
        "submittedOnDailyAt": f"{YESTERDAY.isoformat()}T09:00:00.000Z",
    }
}


def atom_feed(*entries: tuple[str, str, str]) -> str:
    """An arXiv answer with (id, title, primary category) entries."""
    body = "".join(
        f"""<entry><id>http://arxiv.org/abs/{arxiv_id}v1</id>
        <published>{YESTERDAY.isoformat()}T17:00:00Z</published><title>{title}</title>
        <summary>We study {title.lower()}.</summary><author><name>Grace Hopper</name></author>
        <arxiv:primary_category xmlns:arxiv="http://arxiv.org/schemas/atom" term="{category}"/>
        <category term="{category}"/></entry>"""
        for arxiv_id, title, category in entries
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?><feed xmlns="http://www.w3.org/2005/Atom" '
        'xmlns:opensearch="http://a9.com/-/spec/opensearch/1.1/">'
        f"<opensearch:totalResults>{len(entries)}</opensearch:totalResults>{body}</feed>"
    )


ARXIV_FEED = atom_feed(("2611.06001", "Legged robots that learn to climb stairs", "cs.RO"))
JSON = {"Content-Type": "application/json"}
ATOM = {"Content-Type": "application/atom+xml"}


@pytest.fixture
def two_sources(source_server, settings):
    """Hugging Face and arXiv both configured; a reader for each source's paper."""
    settings.ADMINS = [("Ops", "ops@example.org")]
    settings.DIGEST_SOURCES = ["hf", "arxiv"]
    settings.ARXIV_CATEGORIES = ["cs.CL"]
    make_reader("hf-reader@example.org", ["reasoning"])
    make_reader("arxiv-reader@example.org", [], arxiv_categories=["cs.RO"])
    return source_server


def _hf_answers(server):
    server.on("/api/daily_papers", Reply(200, json.dumps([HF_PAPER]), JSON), Reply(200, "[]", JSON))


def _hf_breaks(server):
    server.on("/api/daily_papers", Reply(200, CHANGED_API["an object instead of the array"], JSON))
    server.on(
        f"/papers/date/{YESTERDAY.isoformat()}", Reply(200, CHANGED_PAGE, {"Content-Type": "text/html"})
    )


def _arxiv_answers(server):
    server.on("/api/query", Reply(200, ARXIV_FEED, ATOM))


def _arxiv_breaks(server):
    server.on(
        "/api/query", Reply(200, "<html><body>Rate exceeded.</body></html>", {"Content-Type": "text/html"})
    )


def _night() -> DigestRun:
    """The whole night in-process, send tasks included (they are queued on commit)."""
    with TestCase.captureOnCommitCallbacks(execute=True):
        run_id = nightly_run(EDITION.isoformat())
    return DigestRun.objects.get(id=run_id)


def _recipients() -> set[str]:
    return {message.to[0] for message in mail.outbox if message.to != ["ops@example.org"]}


def _only_failure(run: DigestRun) -> str:
    """The run's one error, notes aside."""
    (failure,) = [error for error in run.errors if not error.startswith("note:")]
    return failure


def _admin_mail():
    return [message for message in mail.outbox if message.to == ["ops@example.org"]]


def test_arxiv_failing_still_sends_what_hugging_face_gave(two_sources, admin_client):
    _hf_answers(two_sources)
    _arxiv_breaks(two_sources)

    run = _night()

    assert run.status == DigestRun.Status.SUCCEEDED
    assert set(Paper.objects.values_list("arxiv_id", flat=True)) == {"2611.05001"}
    assert _recipients() == {"hf-reader@example.org"}
    failure = _only_failure(run)
    assert failure.startswith("Source arxiv failed") and "Atom" in failure
    (alert,) = _admin_mail()
    assert "1 source failed" in alert.subject and "Source arxiv failed" in alert.body
    assert "goes on with what hf gave" in alert.body
    assert Delivery.objects.get(subscriber__email="arxiv-reader@example.org").status == Delivery.Status.EMPTY
    # The admin's page for the run names the failed source.
    page = admin_client.get(reverse("admin:digest_digestrun_change", args=[run.pk])).content.decode()
    assert "Source arxiv failed" in page


def test_hugging_face_failing_still_sends_what_arxiv_gave(two_sources):
    _hf_breaks(two_sources)
    _arxiv_answers(two_sources)

    run = _night()

    assert run.status == DigestRun.Status.SUCCEEDED
    assert set(Paper.objects.values_list("arxiv_id", flat=True)) == {"2611.06001"}
    assert _recipients() == {"arxiv-reader@example.org"}
    (digest,) = [m for m in mail.outbox if m.to == ["arxiv-reader@example.org"]]
    assert "Legged robots that learn to climb stairs" in digest.body
    assert "Category: Robotics (cs.RO)" in digest.body
    failure = _only_failure(run)
    assert failure.startswith("Source hf failed") and "DailyPapers" in failure
    (alert,) = _admin_mail()
    assert "Source hf failed" in alert.body and "goes on with what arxiv gave" in alert.body
    # arXiv was asked for the configured categories and the reader's.
    (query,) = {r["query"] for r in two_sources.requests if r["path"] == "/api/query"}
    assert "cat%3Acs.CL+OR+cat%3Acs.RO" in query


def test_both_sources_failing_stops_the_run(two_sources):
    _hf_breaks(two_sources)
    _arxiv_breaks(two_sources)

    run = _night()

    assert run.status == DigestRun.Status.FAILED
    assert "every source failed" in run.errors[-1]
    assert "Source hf failed" in run.errors[-1] and "Source arxiv failed" in run.errors[-1]
    assert not Delivery.objects.exists() and not Paper.objects.exists()
    (alert,) = _admin_mail()
    assert "No digests were sent" in alert.body


def test_require_all_stops_the_run_when_one_source_fails(two_sources, settings):
    settings.DIGEST_SOURCES_REQUIRE_ALL = True
    _hf_answers(two_sources)
    _arxiv_breaks(two_sources)

    run = _night()

    assert run.status == DigestRun.Status.FAILED
    assert "DIGEST_SOURCES_REQUIRE_ALL" in run.errors[-1] and "Source arxiv failed" in run.errors[-1]
    # All or nothing: Hugging Face's paper was not stored either.
    assert not Paper.objects.exists() and not Delivery.objects.exists()
    assert _recipients() == set()


def test_both_sources_merge_by_arxiv_id(two_sources):
    _hf_answers(two_sources)
    two_sources.on(
        "/api/query",
        Reply(200, atom_feed(("2611.05001", "Verifier guided search (arXiv title)", "cs.LO")), ATOM),
    )

    run = _night()

    assert run.status == DigestRun.Status.SUCCEEDED and run.papers_count == 1
    paper = Paper.objects.get()
    assert paper.title == "Verifier-guided search for theorem proving"  # Hugging Face's
    assert paper.categories == ["cs.LO"] and sorted(paper.sources) == ["arxiv", "hf"]
