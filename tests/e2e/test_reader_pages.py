"""The digest as a reader skims it on a phone, and the web side: the sent digest in the
browser, the daily pages and archive, the personal feed. Chromium against the live server."""

from datetime import timedelta
from pathlib import Path

import feedparser
import pytest
from django.core.management import call_command

from digest.compose import MAX_HTML_BYTES
from digest.models import Delivery, Feedback, Paper
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
from tests.subscribers.factories import SubscriberFactory

pytestmark = in_the_browser()

READER = "skimmer@example.org"
MAX_ITEM_HEIGHT = 220
TAP = 44

# Each paper's block runs from its title anchor (#p<id>) to the next one's; the
# last ends with its row of links. The divider above a block belongs to it.
ITEMS_JS = """() => {
  const anchors = [...document.querySelectorAll('div[id^="p"]')].filter(el => /^p\\d+$/.test(el.id));
  const tops = anchors.map(el => el.getBoundingClientRect().top + window.scrollY);
  const links = [...document.querySelectorAll('a[aria-label="Less like this"]')];
  const lastEnd = links.length ? links[links.length - 1].getBoundingClientRect().bottom + window.scrollY : 0;
  const heights = tops.map((top, i) => Math.round((i + 1 < tops.length ? tops[i + 1] : lastEnd + 6) - top));
  const small = [...document.querySelectorAll('a')].map(a => {
    const box = a.getBoundingClientRect();
    return {text: (a.innerText || a.getAttribute('aria-label') || '').trim().slice(0, 30),
            width: Math.round(box.width), height: Math.round(box.height)};
  }).filter(link => link.width < 44 || link.height < 44);
  const votes = [...document.querySelectorAll('span')].filter(s => s.innerText.includes('▲'))
    .map(s => ({text: s.innerText, lines: s.getClientRects().length}));
  return {ids: anchors.map(el => el.id), heights, small, votes};
}"""


@pytest.fixture
def site(live_server, settings, isolated_outbox):
    settings.SITE_URL = live_server.url
    settings.EMAIL_BACKEND = "mail.backends.OutboxEmailBackend"
    settings.DIGEST_IMAGES = False
    return live_server.url


def _night() -> Delivery:
    """The demo papers, one reader with broad interests, and the night's run."""
    papers_load_file(path=SAMPLE_PAPERS)
    SubscriberFactory(
        email=READER,
        topics=["reasoning", "efficiency", "agents", "multimodal", "code", "video", "evaluation"],
        interests="speculative decoding",
        digest_size=8,
    )
    latest = Paper.objects.order_by("-featured_on").first().featured_on
    edition = latest + timedelta(days=1)
    call_command("run_digest", date=edition.isoformat(), no_fetch=True)
    return Delivery.objects.get(subscriber__email=READER, edition=edition)


def _open_email(page, html: str, tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.html"
    path.write_text(html, encoding="utf-8")
    page.goto(path.as_uri())


def test_digest_is_skimmable_on_a_phone_and_opens_in_the_browser(site, watched, isolated_outbox, tmp_path):
    delivery = _night()
    assert delivery.status == Delivery.Status.SENT and len(delivery.paper_ids) >= 5
    (message,) = outbox_messages(isolated_outbox, to=READER)
    html = html_part(message)
    assert len(html.encode()) <= MAX_HTML_BYTES

    # The email at 375 px: short items, big tap targets, counts that stay with their mark.
    phone = watched(PHONE)
    _open_email(phone, html, tmp_path, "digest-phone")
    layout = phone.evaluate(ITEMS_JS)
    assert layout["ids"] == [f"p{paper_id}" for paper_id in delivery.paper_ids]
    assert max(layout["heights"]) <= MAX_ITEM_HEIGHT, layout["heights"]
    assert not layout["small"], layout["small"]
    assert layout["votes"] and all(vote["lines"] == 1 for vote in layout["votes"]), layout["votes"]
    # The list of titles at the top leads to each paper.
    first_title = Paper.objects.get(id=delivery.paper_ids[0]).title
    # The list names the picks (the "Also trending" section stays below it); its last entry scrolls there.
    toc = phone.locator('ol a[href^="#p"]')
    picks = [f"#p{paper_id}" for paper_id in delivery.paper_ids]
    assert 1 <= toc.count() <= len(picks)
    target = toc.last.get_attribute("href")
    assert target in picks
    toc.last.click()
    assert phone.evaluate("location.hash") == target
    assert first_title in phone.locator("ol").first.inner_text()
    screenshot(phone, "digest-skim")
    desktop = watched(DESKTOP)
    _open_email(desktop, html, tmp_path, "digest-desktop")
    screenshot(desktop, "digest-skim")
    dark = watched(PHONE)
    dark.emulate_media(color_scheme="dark")
    _open_email(dark, html, tmp_path, "digest-dark")
    background = dark.evaluate("getComputedStyle(document.querySelector('.pb-card div')).backgroundColor")
    assert background == "rgb(30, 32, 41)"
    screenshot(dark, "digest-skim-dark")

    # "View in browser" from the real sent digest: the same papers, in order, with full abstracts.
    url = link_in(html, "View in browser")
    assert url.startswith(site + "/digest/")
    for page in (watched(PHONE), desktop):
        page.goto(url)
        titles = dict(Paper.objects.filter(id__in=delivery.paper_ids).values_list("id", "title"))
        shown_titles = [" ".join(t.split()) for t in page.locator("article.paper h2").all_inner_texts()]
        assert shown_titles == [" ".join(titles[paper_id].split()) for paper_id in delivery.paper_ids]
        first = Paper.objects.get(id=delivery.paper_ids[0])
        abstract = " ".join(page.locator("article.paper .abstract").first.inner_text().split())
        assert abstract == " ".join(first.abstract.split())
        screenshot(page, "digest-web")

    # Its feed is announced on the page and is valid Atom.
    feed_href = desktop.get_attribute('link[rel="alternate"][type="application/atom+xml"]', "href")
    response = desktop.request.get(feed_href)
    assert response.status == 200
    feed = feedparser.parse(response.body())
    assert not feed.bozo, feed.bozo_exception
    assert feed.entries and all(entry.id and entry.link for entry in feed.entries)
    sent_titles = set(Paper.objects.filter(id__in=delivery.paper_ids).values_list("title", flat=True))
    assert sent_titles & {entry.title for entry in feed.entries}

    # Votes on the web page work: the page asks, the button records.
    desktop.locator('a.vote:has-text("More like this")').first.click()
    desktop.wait_for_url(site + "/feedback/**")
    assert desktop.get_by_role("link", name=first_title).count() >= 1
    desktop.get_by_role("button", name="Yes, more like this").click()
    desktop.wait_for_selector("text=Thanks, noted")
    subscriber = Subscriber.objects.get(email=READER)
    assert Feedback.objects.filter(subscriber=subscriber, paper_id=delivery.paper_ids[0], vote=1).exists()


def test_daily_pages_page_through_days_filter_topics_and_hide_hidden_papers(site, watched):
    papers_load_file(path=SAMPLE_PAPERS)
    days = sorted(set(Paper.objects.values_list("featured_on", flat=True)))
    hidden = Paper.objects.filter(featured_on=days[-1]).order_by("-upvotes").first()
    hidden.hidden = True
    hidden.save(update_fields=["hidden"])

    for width in (PHONE, DESKTOP):
        page = watched(width)
        page.goto(site + "/papers/")
        assert page.locator("h1").inner_text() == f"Papers of {days[-1]:%A %-d %B %Y}"
        assert hidden.title not in page.locator("main").inner_text()
        assert (
            page.locator("article.paper").count()
            == Paper.objects.filter(featured_on=days[-1], hidden=False).count()
        )
        screenshot(page, "papers")
        # Back through the days, then forward again.
        for day in reversed(days[:-1]):
            page.locator('a[rel="prev"]').click()
            page.wait_for_url(f"{site}/papers/{day}/")
            assert page.locator("h1").inner_text() == f"Papers of {day:%A %-d %B %Y}"
        assert page.locator('a[rel="prev"]').count() == 0
        page.locator('a[rel="next"]').click()
        page.wait_for_url(f"{site}/papers/{days[1]}/")

        # A topic filter keeps only that topic's papers.
        chip = page.locator(".topic-filter a.chip").nth(1)
        expected = int(chip.locator("span").inner_text())
        chip.click()
        page.wait_for_url("**?topic=*")
        assert page.locator("article.paper").count() == expected
        assert page.locator('.topic-filter a[aria-current="page"]').count() == 1
        screenshot(page, "papers-topic")

        page.goto(site + "/archive/")
        links = page.locator("ul.archive a")
        assert links.count() == len(days)
        screenshot(page, "archive")
        links.first.click()
        page.wait_for_url(f"{site}/papers/{days[-1]}/")

        # The signup page's sample is the real email, in its sandboxed frame.
        page.goto(site + "/")
        sample = page.frame_locator("iframe.sample-frame")
        sample.locator("text=In this issue").wait_for()
        assert sample.locator('a[aria-label="More like this"]').count() >= 1
        assert page.locator(".topic-description").count() == 22
        screenshot(page, "signup-sample")
