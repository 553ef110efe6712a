"""The paper source changes its structure overnight: the run stops, tells the
admins, and sends nothing."""

import functools
import json

import pytest
from django.core import mail

from digest import sources
from digest.models import Delivery, DigestRun, Paper
from digest.sources import hf_api, hf_page
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
    """The Hugging Face API and papers page, served from loopback."""
    with LoopbackServer() as server:
        monkeypatch.setitem(
            sources.FETCHERS,
            sources.SOURCE_HF_API,
            functools.partial(hf_api.fetch, base_url=f"{server.base}/api/daily_papers"),
        )
        monkeypatch.setattr(hf_page, "PAGE_URL", server.base + "/papers/date/{day}")
        monkeypatch.setattr(hf_page, "LEGACY_PAGE_URL", f"{server.base}/papers")
        yield server


@pytest.mark.parametrize("change", sorted(CHANGED_API))
def test_changed_source_stops_the_run_tells_admins_and_sends_nothing(change, source_server, settings):
    settings.ADMINS = [("Ops", "ops@example.org")]
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
