"""The web side: a sent digest in the browser, the public daily pages and archive, the personal feed."""

from datetime import timedelta

import feedparser
import pytest
from django.utils.html import escape

from digest.models import Delivery
from digest.signed_links import (
    feed_url,
    make_feed_token,
    make_view_token,
    read_feed_token,
    read_view_token,
    view_url,
)
from subscribers.models import Subscriber
from tests.digest.builders import EDITION, YESTERDAY, make_paper, make_reader

pytestmark = pytest.mark.django_db

LONG_ABSTRACT = "We study long things. " + "This abstract goes on with a unique tail sentence. " * 3


@pytest.fixture
def sent(settings):
    settings.SITE_URL = "http://testserver"
    papers = [
        make_paper(1, topics={"video": 0.9}, title="Video diffusion at scale", abstract=LONG_ABSTRACT),
        make_paper(2, topics={"video": 0.8}, title="Hidden video paper", hidden=True),
        make_paper(3, topics={"video": 0.7}, title="Another video paper", upvotes=3),
    ]
    ada = make_reader("ada@example.org", ["video"])
    delivery = Delivery.objects.create(
        subscriber=ada,
        edition=EDITION,
        status=Delivery.Status.SENT,
        subject="3 papers for Tue 24 Nov: Video diffusion at scale",
        paper_ids=[paper.id for paper in papers],
    )
    return ada, delivery, papers


def _path(url: str) -> str:
    return url.removeprefix("http://testserver")


# --- Signed links ------------------------------------------------------------------------


def test_view_and_feed_tokens_round_trip_and_do_not_open_each_other():
    view = make_view_token(delivery_id=99, token_version=3)
    feed = make_feed_token(subscriber_id=99, token_version=3)
    assert (read_view_token(view).id, read_view_token(view).token_version) == (99, 3)
    assert (read_feed_token(feed).id, read_feed_token(feed).token_version) == (99, 3)
    from subscribers.tokens import InvalidToken

    with pytest.raises(InvalidToken):
        read_view_token(feed)
    with pytest.raises(InvalidToken):
        read_feed_token(view)


# --- View in browser ---------------------------------------------------------------------


def test_sent_digest_opens_in_the_browser_with_full_abstracts_and_working_votes(client, sent):
    ada, delivery, _ = sent
    response = client.get(_path(view_url(delivery_id=delivery.id, token_version=ada.token_version)))
    assert response.status_code == 200
    html = response.content.decode()
    assert "Video diffusion at scale" in html and "Another video paper" in html
    assert escape(LONG_ABSTRACT.strip()) in html  # the whole abstract, not a TL;DR
    assert "Why: " in html
    assert "Hidden video paper" not in html
    assert html.index("Video diffusion at scale") < html.index("Another video paper")  # as sent
    assert response["X-Robots-Tag"] == "noindex, nofollow"
    assert "no-store" in response["Cache-Control"]
    assert '<link rel="alternate" type="application/atom+xml"' in html
    # Its vote links are the reader's own and lead to the voting page.
    vote = html.split('class="tap vote" href="')[1].split('"')[0]
    page = client.get(vote)
    assert page.status_code == 200 and b"Video diffusion at scale" in page.content


def test_tampered_view_link_is_a_400(client, sent):
    ada, delivery, _ = sent
    token = make_view_token(delivery_id=delivery.id, token_version=ada.token_version)
    for bad in (token[:-2] + "xx", token.replace(token.split(".")[0], "zz", 1), "nonsense", "a" * 300):
        assert client.get(f"/digest/{bad}/").status_code == 400, bad


def test_revoked_view_link_is_a_404(client, sent):
    ada, delivery, _ = sent
    path = _path(view_url(delivery_id=delivery.id, token_version=ada.token_version))
    Subscriber.objects.filter(pk=ada.pk).update(token_version=ada.token_version + 1)
    assert client.get(path).status_code == 404


def test_view_link_of_an_unsent_or_missing_delivery_is_a_404(client, sent):
    _, delivery, _ = sent
    Delivery.objects.filter(pk=delivery.pk).update(status=Delivery.Status.FAILED)
    assert client.get(_path(view_url(delivery_id=delivery.id, token_version=1))).status_code == 404
    assert client.get(_path(view_url(delivery_id=10**6, token_version=1))).status_code == 404


# --- Public daily pages --------------------------------------------------------------


def test_papers_shows_the_latest_day_most_upvoted_first_without_hidden_papers(client, sent):
    make_paper(10, topics={"code": 0.9}, day=YESTERDAY - timedelta(days=1), title="Older code paper")
    response = client.get("/papers/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "Papers of Monday 23 November 2026" in html
    assert html.index("Video diffusion at scale") < html.index("Another video paper")
    assert "Hidden video paper" not in html
    assert "Older code paper" not in html
    assert "▲&nbsp;10" in html


def test_day_pages_link_to_the_previous_and_next_day_with_papers(client, sent):
    first = YESTERDAY - timedelta(days=5)
    make_paper(10, topics={"code": 0.9}, day=first, title="Older code paper")
    hidden_day = YESTERDAY - timedelta(days=2)
    make_paper(11, topics={"code": 0.9}, day=hidden_day, title="Only hidden", hidden=True)
    old = client.get(f"/papers/{first}/").content.decode()
    assert "Older code paper" in old
    assert f'rel="next" href="/papers/{YESTERDAY}/"' in old  # the hidden-only day is skipped
    assert 'rel="prev"' not in old
    latest = client.get(f"/papers/{YESTERDAY}/").content.decode()
    assert f'rel="prev" href="/papers/{first}/"' in latest
    assert 'rel="next"' not in latest
    assert client.get(f"/papers/{hidden_day}/").status_code == 404


def test_topic_filter_keeps_only_that_topics_papers(client, sent):
    make_paper(10, topics={"code": 0.9}, title="A code paper")
    html = client.get(f"/papers/{YESTERDAY}/?topic=code").content.decode()
    assert "A code paper" in html
    assert "Video diffusion at scale" not in html
    assert '<a class="chip" href="?topic=code" aria-current="page">' in html
    everything = client.get(f"/papers/{YESTERDAY}/").content.decode()
    assert "A code paper" in everything and "Video diffusion at scale" in everything


def test_unknown_topic_and_bad_dates_are_404s(client, sent):
    assert client.get(f"/papers/{YESTERDAY}/?topic=no-such-topic").status_code == 404
    assert client.get("/papers/2026-13-45/").status_code == 404
    assert client.get("/papers/yesterday/").status_code == 404
    assert client.get("/papers/2020-01-01/").status_code == 404


def test_archive_lists_days_with_visible_papers_only(client, sent):
    make_paper(11, topics={"code": 0.9}, day=YESTERDAY - timedelta(days=2), hidden=True)
    html = client.get("/archive/").content.decode()
    assert f'href="/papers/{YESTERDAY}/"' in html
    assert "2 papers" in html  # the hidden paper is not counted
    assert f'href="/papers/{YESTERDAY - timedelta(days=2)}/"' not in html


def test_public_pages_send_a_strict_content_security_policy(client, sent):
    for path in ("/papers/", "/archive/", f"/papers/{YESTERDAY}/?topic=video"):
        response = client.get(path)
        policy = response["Content-Security-Policy"]
        assert "unsafe-inline" not in policy and "script-src 'self'" in policy, path
        assert "<script" not in response.content.decode()
        assert ' style="' not in response.content.decode()


def test_no_papers_at_all_is_an_empty_page_not_an_error(client):
    assert client.get("/papers/").status_code == 200
    assert client.get("/archive/").status_code == 200


# --- The personal feed ---------------------------------------------------------------


def test_feed_is_valid_atom_with_the_readers_matches(client, sent):
    ada, *_ = sent
    make_paper(10, topics={"code": 0.9}, title="A code paper")
    response = client.get(_path(feed_url(subscriber_id=ada.id, token_version=ada.token_version)))
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/atom+xml")
    feed = feedparser.parse(response.content)
    assert not feed.bozo, feed.bozo_exception
    assert feed.version == "atom10"
    titles = [entry.title for entry in feed.entries]
    assert titles == ["Video diffusion at scale", "Another video paper"]
    for entry in feed.entries:
        assert entry.id.startswith("tag:testserver,2026-11-23:paper/2611.")
        assert entry.link.startswith("https://huggingface.co/papers/2611.")
        assert "Why:" in entry.summary
        assert entry.updated_parsed
    assert len({entry.id for entry in feed.entries}) == len(feed.entries)


def test_tampered_feed_link_is_400_and_revoked_or_left_is_404(client, sent):
    ada, *_ = sent
    path = _path(feed_url(subscriber_id=ada.id, token_version=ada.token_version))
    assert client.get(path[:-3] + "x/").status_code == 400
    assert client.get(path).status_code == 200
    Subscriber.objects.filter(pk=ada.pk).update(status=Subscriber.Status.UNSUBSCRIBED)
    assert client.get(path).status_code == 404
    Subscriber.objects.filter(pk=ada.pk).update(status=Subscriber.Status.ACTIVE, token_version=2)
    assert client.get(path).status_code == 404


def test_preference_centre_links_and_announces_the_feed(client, sent):
    from subscribers.tokens import make_manage_token

    ada, *_ = sent
    html = client.get(f"/manage/{make_manage_token(ada.id, ada.token_version)}/").content.decode()
    url = feed_url(subscriber_id=ada.id, token_version=ada.token_version)
    title = "Paperboy: papers picked for you"
    assert f'<link rel="alternate" type="application/atom+xml" title="{title}" href="{url}">' in html
    assert f'<a href="{url}">Atom feed</a>' in html
