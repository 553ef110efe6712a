"""The admin as curators use it, in a real Chromium at 1280 px: lists that fit, a preview
that tells the truth about a sent edition, a run that fails in plain sight, an import."""

import threading
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from digest.background import wait_for_background
from digest.models import Delivery, DigestRun
from digest.sources.base import SourceError
from subscribers.models import Subscriber
from tests.digest.builders import EDITION, make_paper, make_reader
from tests.digest.sending_support import run_night
from tests.e2e.conftest import DESKTOP, in_the_browser, screenshot

pytestmark = in_the_browser()

PASSWORD = "a-long-password-1"
LONG_TITLE = (
    "Scaling test-time compute with process reward models and verifier-guided tree search for "
    "long-horizon mathematical reasoning"
)

# Where an element's box lies, and the part of the screen it can be seen in: the viewport,
# narrowed by every ancestor that clips or scrolls sideways (the admin puts lists in one).
BOX_JS = """(selector) => {
  const el = document.querySelector(selector);
  if (!el) return null;
  const box = el.getBoundingClientRect();
  let visibleLeft = 0, visibleRight = document.documentElement.clientWidth;
  for (let up = el.parentElement; up; up = up.parentElement) {
    if (getComputedStyle(up).overflowX !== 'visible') {
      const clip = up.getBoundingClientRect();
      visibleLeft = Math.max(visibleLeft, clip.left);
      visibleRight = Math.min(visibleRight, clip.right);
    }
  }
  return {left: box.left, right: box.right, top: box.top, bottom: box.bottom,
          visibleLeft, visibleRight, page: document.documentElement.scrollWidth};
}"""


@pytest.fixture
def admin_page(live_server, settings, watched, django_user_model):
    settings.SITE_URL = live_server.url
    settings.EMAIL_BACKEND = "mail.backends.OutboxEmailBackend"
    django_user_model.objects.create_superuser("curator", "curator@example.org", PASSWORD)
    page = watched(DESKTOP)
    base = f"{live_server.url}/{settings.ADMIN_URL}"
    page.goto(base)
    page.fill("input[name=username]", "curator")
    page.fill("input[name=password]", PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(base)
    page.admin_base = base
    return page


def box(page, selector: str) -> dict:
    found = page.evaluate(BOX_JS, selector)
    assert found is not None, f"nothing matches {selector}"
    return found


def assert_inside(page, selector: str) -> None:
    found = box(page, selector)
    assert found["visibleLeft"] <= found["left"] and found["right"] <= found["visibleRight"] + 1, (
        selector,
        found,
    )


def test_lists_fit_1280_with_the_columns_curators_use(admin_page):
    page = admin_page
    topics = {"reasoning": 0.9, "agents": 0.8, "alignment": 0.7, "code": 0.6, "efficiency": 0.55}
    for n in range(1, 25):
        make_paper(n, topics=topics, title=f"{LONG_TITLE} ({n})", upvotes=100 - n)
    reader = make_reader("a.very.long.address.for.testing.widths@research-lab.example.org", ["reasoning"])
    run_night()
    Delivery.objects.filter(subscriber=reader).update(
        error="ESP answered 503 Service Unavailable: " + "try again later " * 10
    )

    assert "Paperboy admin" in page.title()
    assert "Django administration" not in page.content()

    page.goto(page.admin_base + "digest/paper/")
    header = page.locator("#result_list thead").inner_text().lower()
    for column in ("title", "featured on", "upvotes", "topics", "hidden", "pinned"):
        assert column in header, column
    assert_inside(page, "#result_list tbody tr:first-child td.field-topic_list")
    assert_inside(page, "#result_list tbody tr:first-child input[name$='-hidden']")
    assert_inside(page, "#result_list tbody tr:first-child input[name$='-pinned']")
    assert box(page, "#result_list")["page"] <= DESKTOP
    screenshot(page, "admin-papers")

    for path, last_column in [
        ("digest/delivery/", "td.field-short_error"),
        ("digest/digestrun/", "td.field-first_error"),
        ("subscribers/subscriber/", "td.field-last_digest"),
    ]:
        page.goto(page.admin_base + path)
        screenshot(page, "admin-" + path.strip("/").replace("/", "-"))
        assert_inside(page, f"#result_list tbody tr:first-child {last_column}")
        assert box(page, "#result_list")["page"] <= DESKTOP, path

    # The runs chart's last date is not under the object tools.
    page.goto(page.admin_base + "digest/digestrun/")
    tools = box(page, ".object-tools")
    chart = box(page, "#runs-chart svg")
    assert tools["bottom"] <= chart["top"] or tools["right"] <= chart["left"], (tools, chart)


def test_preview_of_a_sent_edition_shows_what_the_reader_got(admin_page):
    page = admin_page
    make_paper(1, topics={"reasoning": 0.9}, title="Proofs with search", upvotes=20)
    make_paper(2, topics={"reasoning": 0.7}, title="Chains of thought", upvotes=5)
    make_reader("ada@example.org", ["reasoning"])
    for n in range(30):
        make_reader(f"reader{n}@example.org", ["video"])
    run_night()
    delivery = Delivery.objects.get(subscriber__email="ada@example.org")
    assert delivery.status == Delivery.Status.SENT

    page.goto(page.admin_base + "digest/digestrun/preview/")
    # A search box that asks the server, not a list of every address.
    assert page.locator("select#id_subscriber option").count() == 0
    page.locator("#preview-form .select2-selection").click()
    page.locator(".select2-search__field").fill("ada@")
    page.locator(".select2-results__option", has_text="ada@example.org").click()
    page.fill("#id_edition", EDITION.isoformat())
    page.get_by_role("button", name="Preview").click()
    page.wait_for_selector("#preview-outcome")

    outcome = page.locator("#preview-outcome")
    assert outcome.get_attribute("data-outcome") == "sent"
    assert "Sent to ada@example.org" in outcome.inner_text()
    assert "relevance gate" not in page.content()
    assert delivery.subject in page.locator("h2").all_inner_texts()
    frame = page.frame_locator("iframe.pb-email-frame")
    assert "Proofs with search" in frame.locator("body").inner_text()
    assert "Chains of thought" in frame.locator("body").inner_text()
    screenshot(page, "admin-preview-sent")


def test_a_run_started_from_the_admin_shows_its_failure(admin_page, monkeypatch):
    page = admin_page
    make_reader("ada@example.org", ["reasoning"])
    release = threading.Event()

    def offline_fetch(name, day, **options):
        release.wait(60)
        raise SourceError(name, "https://huggingface.co/api/daily_papers", "connection refused (offline)")

    monkeypatch.setattr("digest.sources.fetch_with_fallback", offline_fetch)
    page.goto(page.admin_base + "digest/digestrun/")
    page.get_by_role("link", name="Start a run now").click()
    page.fill("#id_edition", EDITION.isoformat())
    page.get_by_role("button", name="Start the run").click()
    page.wait_for_selector("#run-status")

    # The page came back while the run was still fetching, and says so.
    assert page.locator("#run-status").inner_text() == "Running"
    assert DigestRun.objects.get().status == DigestRun.Status.RUNNING
    assert page.locator("meta[http-equiv=refresh]").count() == 1
    screenshot(page, "admin-run-running")

    release.set()
    wait_for_background()
    # The page reloads itself until the run is over.
    expect(page.locator("#run-status")).to_have_text("Failed", timeout=20000)
    assert "connection refused (offline)" in page.locator("#run-errors").inner_text()
    assert page.locator(".messagelist .success").count() == 0
    assert page.locator("meta[http-equiv=refresh]").count() == 0
    screenshot(page, "admin-run-failed")

    page.goto(page.admin_base + "digest/digestrun/")
    row = page.locator("#result_list tbody tr").first
    assert "Failed" in row.inner_text() and "connection refused" in row.inner_text()
    assert timezone.now() - DigestRun.objects.get().started_at < timedelta(minutes=5)


def test_importing_a_list_with_good_duplicate_suppressed_and_malformed_rows(admin_page, tmp_path):
    page = admin_page
    make_reader("bounced@example.org", ["reasoning"], status=Subscriber.Status.SUPPRESSED)
    rows = [
        "email,topics,interests,frequency",
        "grace@example.org,reasoning,,daily",
        "GRACE@example.org,agents,,daily",
        "bounced@example.org,reasoning,,daily",
        "not an address,reasoning,,daily",
        "alan@example.org,teleportation,,daily",
    ]
    broken = tmp_path / "list.csv"
    broken.write_text("\n".join(rows) + "\n")

    page.goto(page.admin_base + "subscribers/subscriber/")
    page.get_by_role("link", name="Import subscribers").click()
    page.set_input_files("#id_file", str(broken))
    page.get_by_role("button", name="Import").click()
    page.wait_for_selector("#import-report")
    assert page.locator("#import-report").get_attribute("data-written") == "no"
    assert "Nothing was imported: 2 line(s) have errors" in page.locator("#import-summary").inner_text()
    listed = page.locator("#import-lines tbody tr").all_inner_texts()
    assert [text.split("\t")[0] for text in listed] == ["3", "4", "5", "6"]
    assert "not a valid email address" in listed[2] and "unknown topic 'teleportation'" in listed[3]
    assert not Subscriber.objects.filter(email__iexact="grace@example.org").exists()
    screenshot(page, "admin-import-refused")

    fixed = tmp_path / "fixed.csv"
    fixed.write_text("\n".join(rows[:4]) + "\n")
    page.set_input_files("#id_file", str(fixed))
    page.check("#id_consented")
    page.fill("#id_source", "Reading group sign-up sheet, 2026")
    page.get_by_role("button", name="Import").click()
    page.wait_for_selector("#import-report[data-written=yes]")
    summary = page.locator("#import-summary").inner_text()
    assert "Imported 1 subscriber(s), active (consent recorded); skipped 2." in summary
    listed = page.locator("#import-lines tbody tr").all_inner_texts()
    assert "same address as line 2" in listed[0] and "suppressed" in listed[1]
    grace = Subscriber.objects.get(email="grace@example.org")
    assert grace.status == Subscriber.Status.ACTIVE
    assert grace.consent_source.startswith("imported: Reading group sign-up sheet, 2026")
    screenshot(page, "admin-import-done")
