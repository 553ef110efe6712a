"""A reader's whole journey in a real browser against the live server, checking at
each step that what the page shows is what the database holds."""

from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import call_command

from digest.models import Delivery, Paper
from digest.services.ingest import papers_load_file
from subscribers.models import Subscriber
from tests.e2e.conftest import (
    DESKTOP,
    PHONE,
    SAMPLE_PAPERS,
    html_part,
    in_the_browser,
    link_in,
    outbox_messages,
    screenshot,
)

pytestmark = in_the_browser()

READER = "journey@example.org"


@pytest.fixture
def site(live_server, settings, isolated_outbox):
    settings.SITE_URL = live_server.url
    settings.EMAIL_BACKEND = "mail.backends.OutboxEmailBackend"
    settings.SIGNUP_RATE_LIMIT = ""
    settings.DIGEST_IMAGES = False
    return live_server.url


def ticked_topics(page) -> set[str]:
    return set(page.eval_on_selector_all("input[name=topics]:checked", "boxes => boxes.map(b => b.value)"))


def reader() -> Subscriber:
    return Subscriber.objects.get(email=READER)


def open_email(page, message, tmp_path: Path, name: str) -> str:
    """Show an email's HTML part in the browser, as a mail client would."""
    html = html_part(message)
    path = tmp_path / f"{name}.html"
    path.write_text(html, encoding="utf-8")
    page.goto(path.as_uri())
    return html


def test_signup_confirm_tune_receive_and_leave(site, watched, isolated_outbox, tmp_path):
    phone, page = watched(PHONE), watched(DESKTOP)

    # 1. The signup page.
    page.goto(site + "/")
    assert page.locator("h1").inner_text() == "The day's trending ML papers, ranked for you"
    screenshot(page, "signup")
    phone.goto(site + "/")
    screenshot(phone, "signup")

    # 2. Pick topics and submit.
    page.fill("input[name=email]", READER)
    page.get_by_label("Reasoning").check()
    page.get_by_label("Agents").check()
    page.get_by_role("button", name="Subscribe").click()
    page.wait_for_url(site + "/signup/done/")
    assert page.locator("h1").inner_text() == "Check your inbox"
    subscriber = reader()
    assert subscriber.status == Subscriber.Status.PENDING
    assert set(subscriber.topics.values_list("slug", flat=True)) == {"reasoning", "agents"}

    # 3. The confirmation email, from the outbox, and its link.
    (confirmation,) = outbox_messages(isolated_outbox, to=READER)
    email_page = watched(DESKTOP)
    html = open_email(email_page, confirmation, tmp_path, "confirmation")
    assert link_in(html, "Confirm my subscription").startswith(site + "/confirm/")
    with email_page.expect_popup() as opened:  # email buttons open a new tab
        email_page.get_by_role("link", name="Confirm my subscription").click()
    page = opened.value
    page.wait_for_load_state()

    # 4. Confirm: the GET only asks, the POST confirms.
    assert page.locator("h1").inner_text() == "Confirm your subscription"
    assert READER in page.locator("main").inner_text()
    assert reader().status == Subscriber.Status.PENDING
    page.get_by_role("button", name="Yes, send me the digest").click()
    page.wait_for_selector("text=You're in")
    subscriber = reader()
    assert subscriber.status == Subscriber.Status.ACTIVE and subscriber.confirmed_at is not None
    assert "Chrome" in subscriber.confirm_user_agent

    # 5. The preference centre shows what is stored, and stores what is changed.
    page.get_by_role("link", name="Fine-tune your topics").click()
    page.wait_for_url(site + "/manage/**")
    assert ticked_topics(page) == {"reasoning", "agents"}
    assert "Your digest is on" in page.locator("main").inner_text()
    manage_url = page.url
    page.get_by_label("Agents").uncheck()
    page.get_by_label("Efficiency").check()
    page.fill("textarea[name=interests]", "speculative decoding\nKV cache")
    page.fill("input[name=digest_size]", "5")
    page.get_by_role("button", name="Save preferences").click()
    page.wait_for_selector("text=Your preferences are saved.")
    subscriber = reader()
    assert set(subscriber.topics.values_list("slug", flat=True)) == {"reasoning", "efficiency"}
    assert subscriber.interests == "speculative decoding\nKV cache"
    assert subscriber.digest_size == 5
    assert ticked_topics(page) == {"reasoning", "efficiency"}
    assert page.input_value("textarea[name=interests]") == subscriber.interests
    screenshot(page, "preferences")
    phone.goto(manage_url)
    screenshot(phone, "preferences")

    # 6. The night runs on the bundled sample papers.
    papers_load_file(path=SAMPLE_PAPERS)
    latest = Paper.objects.order_by("-featured_on").first().featured_on
    edition = latest + timedelta(days=1)
    call_command("run_digest", date=edition.isoformat(), no_fetch=True)
    delivery = Delivery.objects.get(subscriber=subscriber, edition=edition)
    assert delivery.status == Delivery.Status.SENT and 1 <= len(delivery.paper_ids) <= 5

    # 7. The digest, in the browser: the papers the database says were sent, in order.
    digest = outbox_messages(isolated_outbox, to=READER)[-1]
    assert digest["Subject"] == delivery.subject
    email_page = watched(DESKTOP)
    html = open_email(email_page, digest, tmp_path, "digest")
    shown = email_page.locator("body").inner_text()
    titles = dict(Paper.objects.filter(id__in=delivery.paper_ids).values_list("id", "title"))
    positions = [shown.find(titles[paper_id]) for paper_id in delivery.paper_ids]
    assert -1 not in positions and positions == sorted(positions), "every sent paper, in the stored order"
    screenshot(email_page, "digest")
    phone_email = watched(PHONE)
    open_email(phone_email, digest, tmp_path, "digest-phone")
    screenshot(phone_email, "digest")
    assert link_in(html, "Unsubscribe") == digest["List-Unsubscribe"].strip().strip("<>")
    email_page.get_by_role("link", name="Unsubscribe", exact=True).click()
    email_page.wait_for_url(site + "/unsubscribe/**")
    page = email_page

    # 8. Unsubscribe: the page asks first (mail scanners open links), the button acts.
    assert page.locator("h1").inner_text() == "Unsubscribe"
    assert READER in page.locator("main").inner_text()
    assert reader().status == Subscriber.Status.ACTIVE
    page.get_by_role("button", name="Unsubscribe").click()
    page.wait_for_selector("text=You are unsubscribed")
    subscriber = reader()
    assert subscriber.status == Subscriber.Status.UNSUBSCRIBED
    assert subscriber.unsubscribe_reason == "unsubscribe page"
    # The preference centre now tells the same story.
    page.goto(manage_url)
    assert "You are unsubscribed" in page.locator("main").inner_text()
