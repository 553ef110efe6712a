"""Papers whose title, abstract or authors carry markup, and whose links are
javascript: URLs, appear as inert text everywhere they are shown: the digest's
HTML and text parts, the public pages and the admin."""

import pytest
from bs4 import BeautifulSoup
from django.core import mail
from django.test import Client

from digest.feedback import make_feedback_token
from digest.models import Delivery, Paper
from tests.digest.builders import EDITION, make_paper, make_reader
from tests.digest.sending_support import run_night

pytestmark = pytest.mark.django_db

TITLE = 'Attention <script>alert("title")</script> is all "><img src=x onerror=alert(1)> you need'
ABSTRACT = (
    'We show <script>alert("abstract")</script> that "><img src=x onerror=alert(2)> and '
    '<a href="javascript:alert(3)">this link</a> stay text.'
)
AUTHORS = ['<script>alert("author")</script>', '"><img src=x onerror=alert(4)>', "Ada Lovelace"]
PAYLOADS = ["<script>alert(", "<img src=x onerror", 'href="javascript:', '<a href="javascript']


@pytest.fixture
def hostile_paper(settings):
    settings.DIGEST_IMAGES = True
    settings.SITE_URL = "https://digest.example.org"
    return make_paper(
        1,
        topics={"reasoning": 0.9},
        upvotes=50,
        title=TITLE,
        abstract=ABSTRACT,
        authors=AUTHORS,
        github_repo="javascript:alert(5)",
        project_page="javascript:alert(6)//https://example.org",
        thumbnail_url="javascript:alert(7)",
        ai_summary='<script>alert("summary")</script>',
    )


def assert_inert(html: str, *, where: str) -> BeautifulSoup:
    """No hostile markup survived: only same-origin scripts, no event handlers,
    no javascript: or data: links, and none of the payloads verbatim."""
    for payload in PAYLOADS:
        assert payload not in html, f"{where}: {payload!r} appears unescaped"
    soup = BeautifulSoup(html, "html.parser")
    for script in soup.find_all("script"):
        src = script.get("src", "")
        own = src.startswith("/") and not src.startswith("//")
        assert own or script.get("type") == "application/json", f"{where}: {script}"
    for tag in soup.find_all(True):
        for name, value in tag.attrs.items():
            assert not name.lower().startswith("on"), f"{where}: {tag}"
            if name.lower() in ("href", "src", "action", "formaction", "srcdoc"):
                text = " ".join(value) if isinstance(value, list) else value
                assert not text.strip().lower().startswith(("javascript:", "data:text")), f"{where}: {tag}"
    return soup


def test_digest_html_and_text_show_hostile_papers_as_text(hostile_paper):
    make_reader("reader@example.org", ["reasoning"])
    run_night()
    assert Delivery.objects.get().status == Delivery.Status.SENT
    (message,) = mail.outbox
    html = next(content for content, kind in message.alternatives if kind == "text/html")

    soup = assert_inert(html, where="email HTML")
    text = soup.get_text(" ")
    assert '<script>alert("title")</script>' in text  # shown, as text
    assert '"><img src=x onerror=alert(4)>' in text
    assert "alert(5)" not in html and "alert(6)" not in html and "alert(7)" not in html
    # The text part is plain text: the title reads as written, not entity-encoded.
    assert TITLE in message.body
    assert "&lt;" not in message.body and "&quot;" not in message.body
    # The javascript: links were dropped, not listed.
    assert "Code:" not in message.body and "Project:" not in message.body
    assert "alert(5)" not in message.body and "alert(6)" not in message.body


def test_feedback_page_shows_the_title_as_text(client, hostile_paper):
    reader = make_reader("reader@example.org", ["reasoning"])
    token = make_feedback_token(reader.pk, hostile_paper.pk, reader.token_version)
    for method in ("get", "post"):
        response = getattr(client, method)(f"/feedback/{token}/up/")
        assert response.status_code == 200
        html = response.content.decode()
        soup = assert_inert(html, where=f"feedback page ({method})")
        assert TITLE in soup.get_text()


def test_web_pages_and_feed_show_hostile_papers_as_text(client, hostile_paper):
    import feedparser

    from digest.signed_links import feed_url, view_url

    reader = make_reader("reader@example.org", ["reasoning"])
    delivery = Delivery.objects.create(
        subscriber=reader, edition=EDITION, status=Delivery.Status.SENT, paper_ids=[hostile_paper.pk]
    )
    day = hostile_paper.featured_on
    site = "https://digest.example.org"
    pages = [
        "/papers/",
        f"/papers/{day}/",
        f"/papers/{day}/?topic=reasoning",
        "/archive/",
        view_url(delivery_id=delivery.pk, token_version=reader.token_version).removeprefix(site),
    ]
    for path in pages:
        response = client.get(path)
        assert response.status_code == 200, path
        soup = assert_inert(response.content.decode(), where=path)
        if path != "/archive/":
            assert TITLE in soup.get_text(), path
            assert '<script>alert("summary")</script>' in soup.get_text(), path
    feed = client.get(
        feed_url(subscriber_id=reader.pk, token_version=reader.token_version).removeprefix(site)
    )
    assert b"<script" not in feed.content and b"<img" not in feed.content
    parsed = feedparser.parse(feed.content)
    assert not parsed.bozo
    (entry,) = parsed.entries
    assert entry.title == TITLE  # text, as written
    assert "<script" not in entry.summary


@pytest.fixture
def admin_client(db, django_user_model):
    user = django_user_model.objects.create_superuser("curator", "curator@example.org", "a-long-password-1")
    client = Client()
    client.force_login(user)
    return client


def test_admin_shows_hostile_papers_as_text(admin_client, hostile_paper, settings):
    reader = make_reader("reader@example.org", ["reasoning"])
    run_night()
    admin = f"/{settings.ADMIN_URL}"
    pages = {
        "paper list": f"{admin}digest/paper/",
        "paper search": f"{admin}digest/paper/?q=script",
        "paper form": f"{admin}digest/paper/{hostile_paper.pk}/change/",
        "delivery list": f"{admin}digest/delivery/",
        "digest preview": f"{admin}digest/digestrun/preview/?subscriber={reader.email}&edition={EDITION}",
    }
    seen = 0
    for where, path in pages.items():
        response = admin_client.get(path)
        if response.status_code == 404:
            continue  # that admin page does not exist in this version
        assert response.status_code == 200, (where, response.status_code)
        assert_inert(response.content.decode(), where=where)
        seen += 1
    assert seen >= 3
    assert Paper.objects.get().title == TITLE  # stored as typed; escaped only on output
