"""Sending through anymail's Postmark backend over real HTTP to the loopback fake ESP."""

import pytest

from digest.models import Delivery
from digest.services import send as send_service
from digest.services.runs import digest_run_start
from tests.digest.builders import EDITION

pytestmark = pytest.mark.django_db


@pytest.fixture
def esp(postmark_esp):
    return postmark_esp


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
