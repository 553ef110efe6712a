"""Sending in batches through anymail's SendGrid backend, over real HTTP to the loopback fake ESP.

One API call carries a shared digest once and each reader's links as
substitutions; the ESP sends every reader an individual message.
"""

import re

import pytest
from django.core.exceptions import ImproperlyConfigured

from digest.models import Delivery
from digest.services.batch import batch_esp_extra
from digest.services.runs import digest_run_start
from digest.services.send import deliveries_send_chunk
from digest.signed_links import read_view_token
from subscribers.models import Subscriber
from tests.digest.builders import EDITION, make_paper, make_reader
from tests.digest.sending_support import (
    assert_each_once,
    assert_links_are_the_readers,
    run_night,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def esp(sendgrid_esp):
    return sendgrid_esp


def test_readers_sharing_a_digest_go_out_in_few_calls_each_with_their_own_links(esp, readers):
    run = run_night()
    assert run.sent_count == len(readers)
    assert_each_once(esp, readers)
    # 12 readers with one shared list, 5 per call.
    assert esp.stats()["calls"] == 3
    by_id = {reader.id: reader for reader in readers}
    for message in esp.accepted:
        reader = next(r for r in readers if r.email == message.to)
        assert "PBX" not in message.html and "PBX" not in message.text
        unsubscribe = assert_links_are_the_readers(message, reader)
        assert (
            message.headers["List-Unsubscribe"] == f"<https://digest.example.org/unsubscribe/{unsubscribe}/>"
        )
        assert message.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert message.headers["List-Id"].startswith("Paperboy daily digest")
        delivery = Delivery.objects.get(subscriber=by_id[reader.id])
        assert message.headers["Message-ID"] == f"<digest.20261124.{delivery.id}@digest.example.org>"
        assert "Why: Topic Reasoning" in message.text
        # "View in browser" is signed for this reader's own delivery.
        view = re.search(r'href="https://digest.example.org/digest/([^/"]+)/"', message.html).group(1)
        assert read_view_token(view).id == delivery.id
    # Each reader's own message id, as anymail reports it per recipient.
    ids = list(Delivery.objects.values_list("esp_message_id", flat=True))
    assert all(ids) and len(set(ids)) == len(readers)


def test_weekly_readers_in_a_batch_get_the_weekly_label_and_list_id(esp, readers):
    weekly = [
        make_reader(
            f"w{i}@example.org", ["reasoning", "agents"], frequency="weekly", weekday=EDITION.weekday()
        )
        for i in range(3)
    ]
    run_night()
    for message in esp.accepted:
        if message.to in {reader.email for reader in weekly}:
            assert message.headers["List-Id"] == "Paperboy weekly digest <weekly.digest.digest.example.org>"
            assert message.subject.startswith("2 papers for the week of 23 Nov: ")
            assert "Week of 23 November 2026" in message.html
        else:
            assert message.headers["List-Id"] == "Paperboy daily digest <daily.digest.digest.example.org>"
            assert message.subject.startswith("2 papers for Tue 24 Nov: ")
    assert {message.to for message in esp.accepted} >= {reader.email for reader in weekly}


def test_fake_esp_sizes_html_after_substitution(esp, readers):
    run_night()
    for message in esp.accepted:
        assert message.html_bytes == len(message.html.encode())


def test_a_refused_payload_fails_every_delivery_of_the_batch_with_the_reason(esp, readers, settings):
    # The ESP refuses the first call itself (a From it does not know), not a recipient.
    settings.DIGEST_SEND_CONCURRENCY = 1  # calls in order: the first carries 5 readers
    esp.set_faults(forbid_first=1)
    run = run_night()
    run.refresh_from_db()
    assert run.failed_count == 5 and run.sent_count == len(readers) - 5
    failed = Delivery.objects.filter(status=Delivery.Status.FAILED)
    assert failed.count() == 5
    assert all(
        "ESP refused the message (403)" in d.error and "verified Sender Identity" in d.error for d in failed
    )
    failed_ids = {d.subscriber_id for d in failed}
    assert_each_once(esp, [r for r in readers if r.id not in failed_ids])


def test_unsubscribed_after_planning_is_cancelled_not_batched(esp, readers):
    run = digest_run_start(edition=EDITION, fetch=False)
    Subscriber.objects.filter(id=readers[0].id).update(status=Subscriber.Status.UNSUBSCRIBED)
    ids = list(Delivery.objects.filter(run=run).order_by("id").values_list("id", flat=True))
    result = deliveries_send_chunk(run_id=run.id, id_from=ids[0], id_to=ids[-1], claim_token="c")
    assert result.cancelled == 1 and result.sent == len(readers) - 1
    assert readers[0].email not in esp.state.recipients()


def test_fake_esp_requires_a_bearer_key(esp):
    import requests

    response = requests.post(esp.url + "v3/mail/send", json={}, timeout=5)
    assert response.status_code == 401


def test_batch_mode_is_chosen_by_backend_and_setting(settings):
    settings.DIGEST_ESP_BATCH = "auto"
    assert batch_esp_extra("anymail.backends.sendgrid.EmailBackend") == {"merge_field_format": "PBX{}PBX"}
    assert batch_esp_extra("anymail.backends.postmark.EmailBackend") is None
    assert batch_esp_extra("django.core.mail.backends.locmem.EmailBackend") is None
    settings.DIGEST_ESP_BATCH = "off"
    assert batch_esp_extra("anymail.backends.sendgrid.EmailBackend") is None
    settings.DIGEST_ESP_BATCH = "on"
    with pytest.raises(ImproperlyConfigured, match="cannot personalise a batch"):
        batch_esp_extra("anymail.backends.postmark.EmailBackend")


def test_batching_off_sends_one_call_per_reader(esp, readers, settings):
    settings.DIGEST_ESP_BATCH = "off"
    run_night()
    assert esp.stats()["calls"] == len(readers)
    assert_each_once(esp, readers)


def test_readers_who_share_preferences_are_planned_next_to_each_other(db):
    make_paper(1, topics={"reasoning": 0.9}, upvotes=30)
    for i in range(6):
        make_reader(f"p{i}@example.org", ["reasoning"] if i % 2 else ["agents", "reasoning"])
    run = digest_run_start(edition=EDITION, fetch=False)
    emails = list(Delivery.objects.filter(run=run).order_by("id").values_list("subscriber__email", flat=True))
    groups = [int(email[1:].split("@")[0]) % 2 for email in emails]
    # One run of each preference set, not interleaved as the readers signed up.
    assert groups in ([0, 0, 0, 1, 1, 1], [1, 1, 1, 0, 0, 0])


def test_recipients_the_esp_reports_rejected_fail_alone():
    from anymail.message import AnymailRecipientStatus, AnymailStatus

    from mail.send import batch_outcome

    class Message:
        to = ["a@example.org", "b@example.org", "c@example.org"]
        anymail_status = AnymailStatus()

    Message.anymail_status.set_recipient_status(
        {
            "a@example.org": AnymailRecipientStatus(message_id="m-a", status="queued"),
            "b@example.org": AnymailRecipientStatus(message_id=None, status="rejected"),
        }
    )
    outcome = batch_outcome(Message())
    assert outcome.accepted == {"a@example.org": "m-a"}
    assert outcome.refused == {
        "b@example.org": "ESP rejected the recipient (rejected)",
        "c@example.org": "the ESP reported nothing for this recipient",
    }


def test_fake_esp_refuses_a_recipient_whose_substituted_html_is_over_102_kb():
    from tests.fake_esp import sendgrid_messages

    html = "<p>PBXBIGPBX</p>" + "x" * 1000
    payload = {
        "from": {"email": "digest@example.org"},
        "subject": "Today",
        "headers": {
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            "List-Id": "digest <d.example.org>",
        },
        "content": [{"type": "text/plain", "value": "hi"}, {"type": "text/html", "value": html}],
        "personalizations": [
            {
                "to": [{"email": email}],
                "substitutions": {"PBXBIGPBX": value},
                "headers": {"List-Unsubscribe": f"<https://example.org/u/{email}>"},
            }
            for email, value in (("small@example.org", "y" * 10), ("big@example.org", "y" * 110_000))
        ],
    }
    messages, problems = sendgrid_messages(payload, keep_bodies=True)
    assert [m.to for m in messages] == ["small@example.org"]
    assert messages[0].html_bytes == len(messages[0].html.encode()) == len(html) - len("PBXBIGPBX") + 10
    assert problems[0]["to"] == "big@example.org"
    assert "over 104448" in problems[0]["problems"][0]
