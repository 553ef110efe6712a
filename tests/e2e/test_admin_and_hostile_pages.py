"""The admin works under the Content-Security-Policy in a real browser, and hostile
paper text stays inert where a browser renders it."""

import pytest

from digest.feedback import make_feedback_token
from tests.digest.builders import EDITION, make_paper, make_reader
from tests.digest.sending_support import run_night
from tests.e2e.conftest import DESKTOP, html_part, in_the_browser, outbox_messages

pytestmark = in_the_browser(timeout=120)

TITLE = 'Attention <script>alert("title")</script> "><img src=x onerror=alert(1)> is all you need'


@pytest.fixture
def site(live_server, settings, isolated_outbox):
    settings.SITE_URL = live_server.url
    settings.EMAIL_BACKEND = "mail.backends.OutboxEmailBackend"
    settings.DIGEST_IMAGES = False
    paper = make_paper(
        1,
        topics={"reasoning": 0.9},
        title=TITLE,
        abstract='We <script>alert("abstract")</script> show "><img src=x onerror=alert(2)> things.',
        authors=["<img src=x onerror=alert(3)>", "Ada Lovelace"],
        project_page="javascript:alert(4)",
    )
    reader = make_reader("reader@example.org", ["reasoning"])
    run_night()
    return {"url": live_server.url, "paper": paper, "reader": reader}


def test_admin_pages_work_under_the_policy(site, watched, settings, django_user_model):
    django_user_model.objects.create_superuser("curator", "curator@example.org", "a-long-password-1")
    page = watched(DESKTOP)
    admin = f"{site['url']}/{settings.ADMIN_URL}"
    page.goto(admin)
    page.fill("input[name=username]", "curator")
    page.fill("input[name=password]", "a-long-password-1")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(admin)
    paths = [
        "digest/paper/",
        f"digest/paper/{site['paper'].pk}/change/",
        "digest/topic/",
        "subscribers/subscriber/",
        f"subscribers/subscriber/{site['reader'].pk}/change/",
        "digest/digestrun/",
        f"digest/digestrun/preview/?subscriber={site['reader'].email}&edition={EDITION}",
    ]
    for path in paths:
        response = page.goto(admin + path)
        assert response.status == 200, path
        # The admin's own scripts ran (they were allowed): its JS sets this class.
        if path.endswith("/change/"):
            page.wait_for_selector("form")
    page.goto(admin + "digest/paper/?q=script")
    assert TITLE[:40] in page.locator("#result_list").inner_text()


def test_hostile_paper_is_inert_text_in_the_digest_and_on_the_feedback_page(
    site, watched, isolated_outbox, tmp_path
):
    reader, paper = site["reader"], site["paper"]
    (digest,) = outbox_messages(isolated_outbox, to=reader.email)
    path = tmp_path / "digest.html"
    path.write_text(html_part(digest), encoding="utf-8")
    page = watched(DESKTOP)
    page.goto(path.as_uri())
    assert page.locator("img[src=x]").count() == 0
    assert TITLE in page.locator("body").inner_text()
    assert page.locator("a[href^='javascript:']").count() == 0

    token = make_feedback_token(reader.pk, paper.pk, reader.token_version)
    page.goto(f"{site['url']}/feedback/{token}/up/")
    assert TITLE in page.locator("main").inner_text()
    page.get_by_role("button").click()
    page.wait_for_selector("text=Thanks, noted")
    assert TITLE in page.locator("main").inner_text()
    assert page.locator("img[src=x]").count() == 0
