from email import message_from_bytes, policy

import pytest
from django.core import mail

from digest.models import Delivery, DigestRun
from subscribers.models import Subscriber
from tests.digest.builders import EDITION, make_paper, make_reader
from tests.digest.sending_support import run_night

pytestmark = pytest.mark.django_db


@pytest.fixture
def night(settings):
    settings.SITE_URL = "https://digest.example.org"
    make_paper(1, topics={"reasoning": 0.9}, upvotes=50, title="Chain-of-thought for theorem proving")
    make_paper(2, topics={"video": 0.8}, upvotes=5)
    make_paper(3, topics={"reasoning": 0.6, "code": 0.7}, upvotes=20)
    return settings


def test_each_due_reader_gets_one_personalised_digest(night):
    ada = make_reader("ada@example.org", ["reasoning"])
    bob = make_reader("bob@example.org", ["video"])

    run = run_night()

    assert run.status == DigestRun.Status.SUCCEEDED
    assert (run.due_count, run.sent_count, run.empty_count, run.failed_count) == (2, 2, 0, 0)
    by_recipient = {message.to[0]: message for message in mail.outbox}
    assert set(by_recipient) == {"ada@example.org", "bob@example.org"}
    ada_mail = by_recipient["ada@example.org"]
    assert ada_mail.subject.startswith("2 papers for Tue 24 Nov: Chain-of-thought for theorem proving")
    assert "Paper number 2" not in ada_mail.body
    assert "Why: Topic: Reasoning" in ada_mail.body
    html = ada_mail.alternatives[0][0]
    assert "Chain-of-thought for theorem proving" in html
    assert ada_mail.extra_headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert ada_mail.extra_headers["List-Unsubscribe"].startswith("<https://digest.example.org/unsubscribe/")
    assert ada_mail.extra_headers["List-Id"]
    assert "PBX" not in html and "PBX" not in ada_mail.body
    deliveries = {d.subscriber_id: d for d in Delivery.objects.all()}
    assert deliveries[ada.id].status == Delivery.Status.SENT
    assert len(deliveries[ada.id].paper_ids) == 2
    assert deliveries[bob.id].esp_message_id
    ada.refresh_from_db()
    assert ada.last_digest_at is not None


def test_second_run_of_same_edition_sends_nothing_new(night):
    make_reader("ada@example.org", ["reasoning"])
    run_night()
    second = run_night()
    assert len(mail.outbox) == 1
    assert second.due_count == 0
    assert Delivery.objects.count() == 1


def test_reader_with_nothing_relevant_gets_no_email(night):
    make_reader("cy@example.org", ["robotics"])
    run = run_night()
    assert mail.outbox == []
    assert run.empty_count == 1
    assert Delivery.objects.get().status == Delivery.Status.EMPTY


def test_empty_digest_can_fall_back_to_trending(night):
    night.DIGEST_SKIP_EMPTY = False
    make_reader("cy@example.org", ["robotics"])
    run_night()
    assert len(mail.outbox) == 1
    assert "Trending: nothing matched your interests today" in mail.outbox[0].body


def test_weekly_reader_only_on_their_weekday(night):
    make_reader("wk@example.org", ["reasoning"], frequency="weekly", weekday=(EDITION.weekday() + 1) % 7)
    make_reader("today@example.org", ["reasoning"], frequency="weekly", weekday=EDITION.weekday())
    run_night()
    assert [m.to[0] for m in mail.outbox] == ["today@example.org"]


def test_inactive_readers_are_not_planned(night):
    for status in ("pending", "paused", "unsubscribed", "suppressed"):
        make_reader(f"{status}@example.org", ["reasoning"], status=status)
    run = run_night()
    assert run.due_count == 0
    assert mail.outbox == []


def test_hidden_papers_never_appear(night):
    from digest.models import Paper

    Paper.objects.filter(arxiv_id="2611.00001").update(hidden=True)
    make_reader("ada@example.org", ["reasoning"])
    run_night()
    assert "theorem proving" not in mail.outbox[0].body


def test_papers_already_sent_are_not_sent_again(night):
    ada = make_reader("ada@example.org", ["reasoning"])
    first = run_night()
    Delivery.objects.filter(run=first).update(edition="2026-11-23")
    Subscriber.objects.filter(id=ada.id).update(last_digest_at=None)
    mail.outbox.clear()
    run_night()
    assert mail.outbox == []  # both matching papers went out in the earlier digest


def test_unsubscribed_after_planning_is_cancelled_not_sent(night):
    from digest.services.runs import digest_run_start
    from digest.services.send import deliveries_send_chunk

    ada = make_reader("ada@example.org", ["reasoning"])
    run = digest_run_start(edition=EDITION, fetch=False)
    Subscriber.objects.filter(id=ada.id).update(status="unsubscribed")
    delivery = Delivery.objects.get()
    result = deliveries_send_chunk(run_id=run.id, id_from=delivery.id, id_to=delivery.id, claim_token="t1")
    assert result.cancelled == 1
    assert mail.outbox == []
    assert Delivery.objects.get().status == Delivery.Status.CANCELLED


def test_outbox_backend_writes_one_eml_per_reader(night, isolated_outbox):
    night.EMAIL_BACKEND = "mail.backends.OutboxEmailBackend"
    make_reader("ada@example.org", ["reasoning"])
    make_reader("bob@example.org", ["video", "code"], interests="theorem proving")
    run_night()
    files = sorted(isolated_outbox.glob("*.eml"))
    assert len(files) == 2
    parsed = [message_from_bytes(f.read_bytes(), policy=policy.default) for f in files]
    assert {m["To"] for m in parsed} == {"ada@example.org", "bob@example.org"}
    for message in parsed:
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert message.get_body(preferencelist=("html",)) is not None
        assert message.get_body(preferencelist=("plain",)) is not None
