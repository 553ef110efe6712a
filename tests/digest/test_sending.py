"""Sending through anymail's Postmark backend over real HTTP to the loopback fake ESP."""

import pytest

from digest.models import Delivery, DigestRun
from digest.services import send as send_service
from digest.services.runs import digest_run_start
from digest.services.send import deliveries_send_chunk
from tests.digest.builders import EDITION
from tests.digest.sending_support import (
    DyingConnection,
    WorkerDied,
    assert_each_once,
    make_readers,
    run_night,
)
from tests.fake_esp import FakeESP

pytestmark = pytest.mark.django_db


@pytest.fixture
def esp(settings):
    with FakeESP() as server:
        settings.EMAIL_BACKEND = "anymail.backends.postmark.EmailBackend"
        settings.ANYMAIL = {
            "POSTMARK_SERVER_TOKEN": "test-token",
            "POSTMARK_API_URL": server.url,
            "REQUESTS_TIMEOUT": 0.5,
        }
        settings.DIGEST_SEND_BACKOFF = 0.01
        settings.SITE_URL = "https://digest.example.org"
        yield server


@pytest.fixture
def readers(db):
    return make_readers()


def test_every_reader_gets_exactly_one_valid_message(esp, readers):
    run = run_night()
    assert run.sent_count == len(readers)
    assert_each_once(esp, readers)
    accepted_ids = {message.message_id for message in esp.accepted}
    stored_ids = set(Delivery.objects.values_list("esp_message_id", flat=True))
    assert stored_ids == accepted_ids
    one = esp.accepted[0]
    assert one.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert one.headers["Message-ID"].startswith("<digest.20261124.")
    assert "Why: Topic: Reasoning" in one.text


def test_twenty_percent_500s_are_retried_without_duplicates(esp, readers):
    esp.set_faults(fail_rate=0.2, seed=7)
    run = run_night()
    assert esp.stats()["faulted"].get("500", 0) > 0
    assert_each_once(esp, readers)
    run.refresh_from_db()
    assert run.sent_count == len(readers) and run.failed_count == 0


def test_429_retry_after_is_honoured(esp, readers):
    esp.set_faults(rate_limit_first=2, retry_after=3)
    run = digest_run_start(edition=EDITION, fetch=False)
    ids = list(Delivery.objects.filter(run=run).order_by("id").values_list("id", flat=True))
    waits = []
    result = deliveries_send_chunk(
        run_id=run.id, id_from=ids[0], id_to=ids[-1], claim_token="c", sleep=waits.append
    )
    assert waits[:2] == [3.0, 3.0]
    assert result.sent == len(readers)
    assert_each_once(esp, readers)


def test_esp_hanging_past_timeout_is_retried(esp, readers):
    esp.set_faults(hang_first=1, hang_seconds=1.5)
    run_night()
    assert esp.stats()["faulted"]["hang"] == 1
    assert_each_once(esp, readers)


def test_permanent_refusal_fails_only_that_delivery_with_reason(esp, readers):
    esp.set_faults(reject={readers[0].email})
    run = run_night()
    failed = Delivery.objects.get(subscriber=readers[0])
    assert failed.status == Delivery.Status.FAILED
    assert "recipient refused" in failed.error
    run.refresh_from_db()
    assert run.failed_count == 1
    assert run.sent_count == len(readers) - 1


def test_esp_down_for_good_ends_in_recorded_failures_not_loss(esp, readers, settings):
    settings.DIGEST_MAX_ATTEMPTS = 2
    settings.DIGEST_SEND_ATTEMPTS = 2
    esp.set_faults(fail_rate=1.0)
    run = run_night()
    run.refresh_from_db()
    statuses = set(Delivery.objects.values_list("status", flat=True))
    assert statuses == {Delivery.Status.FAILED}
    assert all("gave up after 2 attempts" in e for e in Delivery.objects.values_list("error", flat=True))
    assert run.status == DigestRun.Status.SUCCEEDED
    assert run.failed_count == len(readers)
    assert esp.state.recipients() == {}


def test_worker_death_mid_chunk_resends_only_what_the_esp_never_got(esp, readers, monkeypatch):
    from django.core.mail import get_connection

    run = digest_run_start(edition=EDITION, fetch=False)
    ids = list(Delivery.objects.filter(run=run).order_by("id").values_list("id", flat=True))

    # The process vanishes after 5 messages: no bulk write of outcomes happens.
    real_write = send_service.deliveries_record_outcomes
    monkeypatch.setattr(send_service, "deliveries_record_outcomes", lambda **kwargs: None)
    with pytest.raises(WorkerDied):
        deliveries_send_chunk(
            run_id=run.id,
            id_from=ids[0],
            id_to=ids[-1],
            claim_token="task-1",
            connection=DyingConnection(get_connection(), die_after=5),
        )
    assert esp.stats()["accepted"] == 5
    assert Delivery.objects.filter(status=Delivery.Status.PLANNED).count() == 0  # still claimed

    # Celery redelivers the same task (same id) to another worker.
    monkeypatch.setattr(send_service, "deliveries_record_outcomes", real_write)
    result = deliveries_send_chunk(run_id=run.id, id_from=ids[0], id_to=ids[-1], claim_token="task-1")
    # The 5 the ESP took are known from the send journal (Redis, or the row itself
    # in the embedded mode) and are not sent again.
    assert result.sent >= len(readers) - 5
    assert esp.stats()["accepted"] == len(readers)
    assert_each_once(esp, readers)
    assert set(Delivery.objects.values_list("status", flat=True)) == {Delivery.Status.SENT}


def test_a_second_claimant_cannot_take_rows_already_claimed(esp, readers):
    run = digest_run_start(edition=EDITION, fetch=False)
    ids = list(Delivery.objects.filter(run=run).order_by("id").values_list("id", flat=True))
    assert send_service.claim(run_id=run.id, id_from=ids[0], id_to=ids[-1], claim_token="a") == len(ids)
    assert send_service.claim(run_id=run.id, id_from=ids[0], id_to=ids[-1], claim_token="b") == 0
    # ...unless the first claim went stale.
    Delivery.objects.update(claimed_at="2000-01-01T00:00:00Z")
    assert send_service.claim(run_id=run.id, id_from=ids[0], id_to=ids[-1], claim_token="b") == len(ids)


def test_esp_connection_reads_proxy_settings_once_and_keeps_them(esp, monkeypatch):
    from django.core.mail import get_connection

    from mail.send import settle_environment

    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example.org:3128")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    connection = get_connection()
    connection.open()
    try:
        settle_environment(connection)
        session = connection.session
        assert session.trust_env is False
        # The loopback ESP is in NO_PROXY, so it is reached directly, as before.
        assert "https" not in session.proxies and "http" not in session.proxies
        assert session.verify == "/etc/ssl/certs/ca-certificates.crt"
    finally:
        connection.close()

    connection = get_connection()
    connection.open()
    monkeypatch.delenv("NO_PROXY")
    connection.api_url = "https://api.postmarkapp.com/"
    try:
        settle_environment(connection)
        assert connection.session.proxies["https"] == "http://proxy.example.org:3128"
    finally:
        connection.close()
