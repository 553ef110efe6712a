"""The front page: signup form, double opt-in email, no probing, bad input, flood."""

import json

import pytest
from django.core import mail
from django.urls import reverse
from django.utils.html import escape

from subscribers.models import Subscriber
from tests.subscribers.factories import SubscriberFactory
from tests.subscribers.helpers import form_data, html_of, links_in, only_message, path_of

pytestmark = pytest.mark.django_db

SIGNUP = "/"


def form(**overrides) -> dict:
    defaults = {
        "email": "ada@example.org",
        "topics": ["reasoning", "agents"],
        "interests": "speculative decoding, protein folding",
        "frequency": "daily",
        "weekday": "0",
        "website": "",
    }
    return form_data(defaults, overrides)


def test_front_page_explains_the_digest_and_shows_a_sample(client):
    response = client.get(SIGNUP)
    assert response.status_code == 200
    html = response.content.decode()
    assert "trending ML papers" in html
    assert "What a digest looks like" in html
    assert '<iframe class="sample-frame" src="/sample-digest/"' in html
    assert "<legend>Topics</legend>" in html
    assert html.count('type="checkbox" name="topics"') == 22
    assert 'name="csrfmiddlewaretoken"' in html
    assert 'name="website"' in html and 'aria-hidden="true"' in html
    assert "<script" not in html


def test_signup_topics_show_their_descriptions(client):
    from digest.models import Topic

    html = client.get(SIGNUP).content.decode()
    described = Topic.objects.filter(is_active=True).exclude(description="")
    assert described.count() == 22
    for index, topic in enumerate(Topic.objects.filter(is_active=True).order_by("name")):
        element = f'id="id_topics_{index}_description">{escape(topic.description)}</p>'
        assert f'aria-describedby="id_topics_{index}_description"' in html
        assert element in html


def test_signup_sample_is_the_real_digest_of_the_demo_papers(client):
    from digest.sample import SAMPLE_FILE

    response = client.get("/sample-digest/")
    assert response.status_code == 200
    html = response.content.decode()
    # The digest template's own marks: the list of titles and the per-paper blocks.
    assert "In this issue" in html and "View in browser" in html
    sample_titles = [item["paper"]["title"] for item in json.loads(SAMPLE_FILE.read_text())]
    shown = [title for title in sample_titles if escape(title) in html]
    # At most the sample reader's four picks, plus up to three in "Also trending".
    assert 1 <= len(shown) <= 4 + 3
    assert "Why:" in html
    # Only this framed email may carry inline styles, and only our own pages may frame it.
    policy = response["Content-Security-Policy"]
    assert "style-src 'unsafe-inline'" in policy and "frame-ancestors 'self'" in policy
    assert "script-src 'self'" in policy
    assert response["X-Frame-Options"] == "SAMEORIGIN"
    # The signup page itself stays strict.
    signup_policy = client.get(SIGNUP)["Content-Security-Policy"]
    assert "unsafe-inline" not in signup_policy and "frame-ancestors 'none'" in signup_policy


def test_signup_creates_pending_subscriber_with_consent_and_sends_confirmation(client, commit):
    with commit():
        response = client.post(
            SIGNUP, form(), REMOTE_ADDR="203.0.113.7", HTTP_USER_AGENT="Firefox/140 (test)"
        )
    assert response.status_code == 302
    assert response["Location"] == reverse("subscribers:signup_done")

    subscriber = Subscriber.objects.get()
    assert subscriber.email == "ada@example.org"
    assert subscriber.status == Subscriber.Status.PENDING
    assert sorted(subscriber.topics.values_list("slug", flat=True)) == ["agents", "reasoning"]
    assert subscriber.interests == "speculative decoding\nprotein folding"
    assert subscriber.signup_ip == "203.0.113.7"
    assert subscriber.signup_user_agent == "Firefox/140 (test)"
    assert subscriber.confirmed_at is None

    message = only_message()
    assert message.to == ["ada@example.org"]
    assert message.subject == "Confirm your Paperboy subscription"
    text, html = message.body, html_of(message)
    confirm_links = [url for url in links_in(text) if "/confirm/" in url]
    assert len(confirm_links) == 1
    assert confirm_links[0].startswith("https://paperboy.example.org/confirm/")
    assert confirm_links[0] in html
    assert "7 days" in text and "7 days" in html
    assert "Agents, Reasoning" in text or "Reasoning" in text
    assert "speculative decoding" in html
    # Every email carries the one-click unsubscribe headers and a visible link.
    headers = message.extra_headers
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    unsubscribe_url = headers["List-Unsubscribe"].strip("<>")
    assert unsubscribe_url.startswith("https://paperboy.example.org/unsubscribe/")
    assert unsubscribe_url in text and unsubscribe_url in html
    assert headers["List-Id"] == "Paperboy daily digest <daily.digest.paperboy.example.org>"
    assert "/manage/" in text

    done = client.get(reverse("subscribers:signup_done"))
    assert "Check your inbox" in done.content.decode()


def test_signup_requires_csrf_token(csrf_client):
    response = csrf_client.post(SIGNUP, form())
    assert response.status_code == 403
    assert not Subscriber.objects.exists()


def test_signup_for_active_address_sends_manage_link_and_changes_nothing(client, commit, active):
    before = Subscriber.objects.values().get(pk=active.pk)
    with commit():
        response = client.post(SIGNUP, form(email=active.email.upper(), topics=["video"], frequency="weekly"))
    assert response.status_code == 302
    assert response["Location"] == reverse("subscribers:signup_done")
    assert Subscriber.objects.values().get(pk=active.pk) == before
    assert sorted(active.topics.values_list("slug", flat=True)) == ["efficiency", "reasoning"]

    message = only_message()
    assert message.subject == "Your Paperboy preferences"
    assert "already subscribed" in message.body
    manage = [url for url in links_in(message.body) if "/manage/" in url]
    assert manage and manage[0] in html_of(message)
    assert not [url for url in links_in(message.body) if "/confirm/" in url]
    assert message.extra_headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_signup_response_is_identical_for_known_and_unknown_addresses(client, commit, active):
    with commit():
        known = client.post(SIGNUP, form(email=active.email))
        unknown = client.post(SIGNUP, form(email="new-reader@example.org"))
    assert (known.status_code, known["Location"]) == (unknown.status_code, unknown["Location"])
    assert known.content == unknown.content


def test_signup_again_while_pending_resends_confirmation_with_new_choices(client, commit, pending):
    with commit():
        client.post(SIGNUP, form(email=pending.email, topics=["video"], interests=""))
    pending.refresh_from_db()
    assert pending.status == Subscriber.Status.PENDING
    assert list(pending.topics.values_list("slug", flat=True)) == ["video"]
    assert "/confirm/" in only_message().body


def test_signup_after_unsubscribing_restarts_double_opt_in(client, commit):
    gone = SubscriberFactory(status=Subscriber.Status.UNSUBSCRIBED, topics=["code"])
    with commit():
        client.post(SIGNUP, form(email=gone.email))
    gone.refresh_from_db()
    assert gone.status == Subscriber.Status.PENDING
    assert gone.confirmed_at is None
    assert "/confirm/" in only_message().body


def test_signup_for_suppressed_address_sends_nothing(client, commit):
    bounced = SubscriberFactory(status=Subscriber.Status.SUPPRESSED)
    with commit():
        response = client.post(SIGNUP, form(email=bounced.email))
    assert response.status_code == 302
    assert response["Location"] == reverse("subscribers:signup_done")
    bounced.refresh_from_db()
    assert bounced.status == Subscriber.Status.SUPPRESSED
    assert mail.outbox == []


def test_honeypot_gets_the_success_page_but_stores_and_sends_nothing(client, commit):
    with commit():
        response = client.post(SIGNUP, form(website="https://spam.example"))
    assert response.status_code == 302
    assert response["Location"] == reverse("subscribers:signup_done")
    assert not Subscriber.objects.exists()
    assert mail.outbox == []


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"email": "not-an-address"}, "Enter a valid email address."),
        ({"email": "ada@example.org\r\nBcc: victim@example.org"}, "cannot contain line breaks"),
        ({"email": "ada@example.org\n"}, "cannot contain line breaks"),
        ({"email": ""}, "This field is required."),
        ({"email": "a" * 250 + "@example.org"}, "at most 254 characters"),
        ({"topics": ["reasoning", "astrology"]}, "is not one of our topics"),
        ({"topics": None, "interests": ""}, "Pick at least one topic, describe your interests, or follow"),
        ({"interests": "x" * 1001}, "at most 1000 characters"),
        ({"interests": "y" * 121}, "under 120 characters"),
        ({"frequency": "hourly"}, "Select a valid choice"),
        ({"weekday": "9"}, "Select a valid choice"),
    ],
)
def test_bad_signup_input_shows_clear_error_and_changes_nothing(client, commit, overrides, message):
    with commit():
        response = client.post(SIGNUP, form(**overrides))
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not Subscriber.objects.exists()
    assert mail.outbox == []


def test_user_input_is_escaped_when_the_form_is_shown_again(client):
    response = client.post(SIGNUP, form(email="<script>alert(1)</script>", interests="<b>bold</b>"))
    html = response.content.decode()
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;" in html
    assert "<b>bold</b>" not in html


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("Ada@Bücher.Example", "Ada@xn--bcher-kva.example"),
        ("用户@例子.广告", "用户@xn--fsqu00a.xn--4rr70v"),
        ("josé.garcía@correo.es", "josé.garcía@correo.es"),
    ],
)
def test_unicode_and_idn_addresses_are_accepted_and_normalised(client, commit, typed, stored):
    with commit():
        response = client.post(SIGNUP, form(email=typed))
    assert response.status_code == 302
    assert Subscriber.objects.get().email == stored
    assert only_message().to == [stored]


def test_addresses_differing_only_in_case_are_one_subscriber(client, commit):
    with commit():
        client.post(SIGNUP, form(email="Grace@Example.org"))
        client.post(SIGNUP, form(email="grace@EXAMPLE.ORG"))
    assert Subscriber.objects.count() == 1
    assert Subscriber.objects.get().email == "Grace@example.org"


def test_weekly_signup_keeps_the_chosen_day(client, commit):
    with commit():
        client.post(SIGNUP, form(frequency="weekly", weekday="4"))
    subscriber = Subscriber.objects.get()
    assert (subscriber.frequency, subscriber.weekday) == ("weekly", 4)
    assert "weekly on Friday" in only_message().body


def test_flood_from_one_ip_gets_429_and_changes_nothing(client, commit, settings, unique_ip):
    other_ip = unique_ip.replace("10.", "172.", 1)
    settings.SIGNUP_RATE_LIMIT = "3/h"
    with commit():
        statuses = [
            client.post(SIGNUP, form(email=f"flood{n}@example.org"), REMOTE_ADDR=unique_ip).status_code
            for n in range(5)
        ]
    assert statuses == [302, 302, 302, 429, 429]
    assert Subscriber.objects.count() == 3
    assert len(mail.outbox) == 3
    limited = client.post(SIGNUP, form(email="late@example.org"), REMOTE_ADDR=unique_ip)
    assert limited.status_code == 429
    assert limited["Retry-After"] == "3600"
    assert "Too many signups" in limited.content.decode()
    # Another address is unaffected, and GET is never limited.
    assert client.post(SIGNUP, form(email="other@example.org"), REMOTE_ADDR=other_ip).status_code == 302
    assert client.get(SIGNUP, REMOTE_ADDR=unique_ip).status_code == 200


def test_confirmation_link_from_email_opens_the_confirm_page(client, commit):
    with commit():
        client.post(SIGNUP, form())
    url = next(url for url in links_in(only_message().body) if "/confirm/" in url)
    response = client.get(path_of(url))
    assert response.status_code == 200
    assert "Confirm your subscription" in response.content.decode()
