"""Batches through every ESP that can personalise one: anymail's real Mailgun,
Mailjet, SparkPost and SendGrid backends over HTTP to the loopback fake ESP, which
builds each recipient's copy the way that ESP would and checks it."""

import unicodedata

import pytest
from django.core.exceptions import ImproperlyConfigured

from digest.compose import PBX_SYNTAX
from digest.models import Delivery, Paper
from digest.papers import safe_url
from digest.services import send as send_module
from digest.services.batch import BATCH_BACKENDS, MAILGUN, MAILJET, SENDGRID, SPARKPOST, batch_esp
from mail import send as mail_send
from tests.digest.sending_support import (
    assert_each_once,
    assert_links_are_the_readers,
    make_readers,
    run_night,
)
from tests.fake_esp import FakeESP

pytestmark = pytest.mark.django_db

SITE = "https://digest.example.org"


def esp_settings(name: str, url: str) -> tuple[str, dict]:
    return {
        "mailgun": (
            "anymail.backends.mailgun.EmailBackend",
            {"MAILGUN_API_KEY": "key-test", "MAILGUN_API_URL": url + "v3"},
        ),
        "mailjet": (
            "anymail.backends.mailjet.EmailBackend",
            {"MAILJET_API_KEY": "public", "MAILJET_SECRET_KEY": "secret", "MAILJET_API_URL": url + "v3.1/"},
        ),
        "sparkpost": (
            "anymail.backends.sparkpost.EmailBackend",
            {"SPARKPOST_API_KEY": "test-key", "SPARKPOST_API_URL": url + "api/v1/"},
        ),
        "sendgrid": (
            "anymail.backends.sendgrid.EmailBackend",
            {"SENDGRID_API_KEY": "test-key", "SENDGRID_API_URL": url + "v3/"},
        ),
    }[name]


@pytest.fixture(params=["mailgun", "mailjet", "sparkpost", "sendgrid"])
def esp(request, settings):
    with FakeESP() as server:
        backend, anymail = esp_settings(request.param, server.url)
        settings.EMAIL_BACKEND = backend
        settings.ANYMAIL = {**anymail, "REQUESTS_TIMEOUT": 2}
        settings.DIGEST_ESP_BATCH = "on"
        settings.DIGEST_ESP_BATCH_SIZE = 5
        settings.DIGEST_SEND_BACKOFF = 0.01
        settings.SITE_URL = SITE
        server.name = request.param
        yield server


def visible(text: str) -> str:
    return text.replace("\u200b", "")


def test_each_reader_gets_one_valid_copy_with_their_own_links_and_headers(esp):
    readers = make_readers(12)
    run = run_night()
    assert run.sent_count == 12
    assert_each_once(esp, readers)
    assert esp.stats()["calls"] == 3  # 12 readers sharing one digest, 5 a call
    for message in esp.accepted:
        reader = next(r for r in readers if r.email == message.to)
        unsubscribe = assert_links_are_the_readers(message, reader)
        headers = {name.lower(): value for name, value in message.headers.items()}
        assert headers["list-unsubscribe"] == f"<{SITE}/unsubscribe/{unsubscribe}/>"
        assert headers["list-unsubscribe-post"] == "List-Unsubscribe=One-Click"
        delivery = Delivery.objects.get(subscriber=reader)
        assert headers["message-id"] == f"<digest.20261124.{delivery.id}@digest.example.org>"
        # The id the ESP answered with for this recipient is the one recorded
        # (for SendGrid, anymail makes one per personalization and sends it along).
        if esp.name != "sendgrid":
            assert delivery.esp_message_id == message.message_id
        assert delivery.esp_message_id
        assert message.subject == delivery.subject


def test_the_esp_own_limit_on_recipients_per_call_is_kept(esp, settings):
    settings.DIGEST_ESP_BATCH_SIZE = 1000
    readers = make_readers(60)
    run_night()
    assert_each_once(esp, readers)
    expected = {"mailjet": 2}.get(esp.name, 1)  # Mailjet takes 50 messages a call
    assert esp.stats()["calls"] == expected


HOSTILE = "Templates: {{var:UNSUB}} {{{UNSUB}}} {{UNSUB}} %recipient.UNSUB% {% if x %} PBXUNSUBPBX"


def test_scraped_text_in_any_esp_markup_stays_text_and_fills_in_nothing(esp):
    readers = make_readers(6)
    Paper.objects.filter(arxiv_id="2611.00001").update(title=HOSTILE, abstract=f"About {HOSTILE}. " * 3)
    run_night()
    assert_each_once(esp, readers)  # the fake ESP found no markup left and nothing unfilled
    for message in esp.accepted:
        assert HOSTILE in visible(unicodedata.normalize("NFC", message.text))
        # No reader's own links leaked into the paper's text.
        title_line = next(line for line in message.text.splitlines() if "Templates:" in line)
        assert "/unsubscribe/" not in title_line


def test_a_refused_recipient_fails_alone_and_everyone_else_gets_one_copy(esp):
    readers = make_readers(7)
    refused = readers[3]
    esp.set_faults(reject={refused.email})
    run = run_night()
    run.refresh_from_db()
    others = [r for r in readers if r.id != refused.id]
    assert_each_once(esp, others)
    row = Delivery.objects.get(subscriber=refused)
    if esp.name == "sparkpost":
        # SparkPost counts rejected recipients without naming them: every row of
        # that call is recorded as sent, with a note pointing at the webhooks.
        assert row.status == Delivery.Status.SENT
        assert "without naming them" in row.error
        assert run.sent_count == 7
    else:
        assert row.status == Delivery.Status.FAILED and row.error
        assert run.failed_count == 1 and run.sent_count == 6


def test_every_batch_is_marked_in_flight_costs_its_recipients_and_is_journaled(esp, monkeypatch):
    """Through the leased, concurrent engine: each batch's rows are marked in
    flight (under the task's lease) before its call, it takes one turn in the
    rate limit per recipient, and every recipient the ESP took is journaled."""
    readers = make_readers(12)
    marked: list[int] = []
    real_mark = send_module.Lease.mark_inflight

    def mark_inflight(lease, delivery_ids):
        emails = set(Delivery.objects.filter(id__in=delivery_ids).values_list("subscriber__email", flat=True))
        assert not emails & set(esp.state.recipients()), "a row was sent before it was marked in flight"
        marked.extend(delivery_ids)
        return real_mark(lease, delivery_ids)

    costs: list[int] = []
    real_turn = mail_send.wait_for_turn

    def wait_for_turn(limiter, cost, **kwargs):
        costs.append(cost)
        return real_turn(limiter, cost, **kwargs)

    journaled: dict[int, str] = {}
    real_journal_for = send_module.journal_for

    def spied_journal_for(edition):
        journal = real_journal_for(edition)
        real_record_many = journal.record_many

        def record_many(entries):
            journaled.update({delivery_id: entry.message_id for delivery_id, entry in entries.items()})
            real_record_many(entries)

        journal.record_many = record_many
        return journal

    monkeypatch.setattr(send_module.Lease, "mark_inflight", mark_inflight)
    monkeypatch.setattr(mail_send, "wait_for_turn", wait_for_turn)
    monkeypatch.setattr(send_module, "journal_for", spied_journal_for)
    run = run_night()
    assert run.sent_count == 12
    assert_each_once(esp, readers)
    rows = dict(Delivery.objects.filter(run=run).values_list("id", "esp_message_id"))
    assert sorted(marked) == sorted(rows)
    assert sorted(costs) == [2, 5, 5]
    assert journaled == rows


def test_transient_errors_are_retried_without_duplicates(esp):
    readers = make_readers(8)
    esp.set_faults(rate_limit_first=1, retry_after=0, fail_rate=0.3, seed=3)
    run = run_night()
    run.refresh_from_db()
    assert esp.stats()["faulted"]
    assert run.sent_count == 8
    assert_each_once(esp, readers)


def test_auto_picks_every_batching_esp_and_on_refuses_the_others(settings):
    settings.DIGEST_ESP_BATCH = "auto"
    assert batch_esp("anymail.backends.mailgun.EmailBackend") is MAILGUN
    assert batch_esp("anymail.backends.mailjet.EmailBackend") is MAILJET
    assert batch_esp("anymail.backends.sparkpost.EmailBackend") is SPARKPOST
    assert batch_esp("anymail.backends.sendgrid.EmailBackend") is SENDGRID
    assert batch_esp("anymail.backends.postmark.EmailBackend") is None
    settings.DIGEST_ESP_BATCH = "on"
    with pytest.raises(ImproperlyConfigured, match="cannot personalise a batch"):
        batch_esp("anymail.backends.postmark.EmailBackend")
    assert {esp.max_batch for esp in BATCH_BACKENDS.values()} == {1000, 50}


@pytest.mark.parametrize(
    ("syntax", "text"),
    [
        (MAILJET.syntax, "a {{var:X}} b {% if %} c {{{ d"),
        (SPARKPOST.syntax, "{{{UNSUB}}} and {{ x }} and {{{{"),
        (MAILGUN.syntax, "%recipient.UNSUB% and %recipient.%recipient."),
        (PBX_SYNTAX, "PBXUNSUBPBX"),
    ],
)
def test_neutralised_text_holds_no_esp_markup_and_reads_the_same(syntax, text):
    safe = syntax.neutralise(text)
    assert all(sequence not in safe for sequence in syntax.reserved)
    assert visible(safe) == text


def test_links_with_template_markup_are_not_kept():
    assert safe_url("https://example.org/{{var:UNSUB}}") == ""
    assert safe_url("https://example.org/%recipient.UNSUB%") == ""
    assert safe_url("https://example.org/a%20b?q=1") == "https://example.org/a%20b?q=1"
