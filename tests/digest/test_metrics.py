"""/metrics: Prometheus text computed from the database and Redis at scrape time."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.core.cache import cache
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from digest.metrics import (
    ESP_CALLS_KEY,
    ESP_ERRORS_KEY,
    celery_queue_length,
    esp_calls_flush,
    esp_calls_record,
)
from digest.models import Delivery, DigestRun
from mail.send import PermanentSendError, send_with_retries
from subscribers.models import Subscriber
from tests.digest.builders import make_reader
from tests.digest.sending_support import make_readers, run_night
from tests.subscribers.factories import SubscriberFactory

pytestmark = pytest.mark.django_db

TOKEN = "scrape-token-0123456789"


@pytest.fixture(autouse=True)
def fresh_esp_counters():
    cache.delete_many([ESP_CALLS_KEY, ESP_ERRORS_KEY])
    yield
    cache.delete_many([ESP_CALLS_KEY, ESP_ERRORS_KEY])


@pytest.fixture
def token(settings):
    settings.METRICS_TOKEN = TOKEN
    settings.METRICS_ALLOWED_IPS = []
    return TOKEN


def scrape(client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """GET /metrics with the token and parse it the way Prometheus does."""
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=")
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def by_status(samples, name: str) -> dict[str, float]:
    return {dict(labels)["status"]: value for (sample, labels), value in samples.items() if sample == name}


# --- Access ------------------------------------------------------------------------------------


def test_metrics_do_not_exist_without_a_token_or_allow_list(client, settings):
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOWED_IPS = []
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer anything").status_code == 404


@pytest.mark.parametrize(
    "header",
    [None, "", "Bearer", "Bearer wrong-token", f"Basic {TOKEN}", f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}"],
)
def test_a_missing_or_wrong_token_is_refused(client, token, header):
    extra = {"HTTP_AUTHORIZATION": header} if header is not None else {}
    response = client.get("/metrics", **extra)
    assert response.status_code == 403
    assert b"paperboy_" not in response.content


def test_the_bearer_token_opens_the_metrics(client, token):
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"bearer {TOKEN}")
    assert response.status_code == 200
    assert b"paperboy_subscribers" in response.content
    assert "no-cache" in response["Cache-Control"]


@pytest.mark.parametrize(
    ("allowed", "remote", "status"),
    [
        (["10.0.0.0/8"], "10.1.2.3", 200),
        (["10.0.0.0/8"], "192.168.1.5", 403),
        (["192.0.2.7"], "192.0.2.7", 200),
        (["192.0.2.7"], "192.0.2.8", 403),
        (["::1"], "::1", 200),
        (["10.0.0.0/8"], "not-an-ip", 403),
    ],
)
def test_the_ip_allow_list_decides_by_client_address(client, settings, allowed, remote, status):
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOWED_IPS = allowed
    assert client.get("/metrics", REMOTE_ADDR=remote).status_code == status


def test_a_proxy_header_does_not_pass_the_allow_list(client, settings):
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOWED_IPS = ["127.0.0.1"]
    response = client.get("/metrics", REMOTE_ADDR="203.0.113.9", HTTP_X_FORWARDED_FOR="127.0.0.1")
    assert response.status_code == 403


def test_only_get_is_answered(client, token):
    assert client.post("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 405


# --- Content -----------------------------------------------------------------------------------


def test_scrape_counts_runs_deliveries_and_signups_from_the_database(client, token):
    readers = make_readers(3)
    SubscriberFactory(status=Subscriber.Status.PENDING)
    SubscriberFactory(status=Subscriber.Status.UNSUBSCRIBED)
    run = run_night()
    assert run.sent_count == 3
    DigestRun.objects.create(edition=run.edition, status=DigestRun.Status.FAILED)
    # An edition outside the window counts for nobody.
    old = Delivery.objects.create(
        subscriber=readers[0], edition=timezone.now().date() - timedelta(days=400), status="failed"
    )

    samples = scrape(client)

    runs = by_status(samples, "paperboy_digest_runs")
    assert set(runs) == set(DigestRun.Status.values)  # every status has a series, zero or not
    assert (runs["succeeded"], runs["failed"], sum(runs.values())) == (1, 1, 2)
    edition = by_status(samples, "paperboy_current_edition_deliveries")
    assert edition["sent"] == 3 and sum(edition.values()) == 3
    assert set(edition) == set(Delivery.Status.values)
    recent = by_status(samples, "paperboy_deliveries")
    expected_recent = 3 if (timezone.now().date() - run.edition).days <= 7 else 0
    assert recent["sent"] == expected_recent and recent["failed"] == 0
    assert old.status == "failed"
    subscribers = by_status(samples, "paperboy_subscribers")
    assert subscribers["active"] == 3 and subscribers["pending"] == 1 and subscribers["unsubscribed"] == 1
    assert samples[("paperboy_current_edition_date_seconds", ())] == pytest.approx(
        datetime(run.edition.year, run.edition.month, run.edition.day, tzinfo=UTC).timestamp()
    )
    # The three digests went through the send path, which counted its calls.
    assert samples[("paperboy_esp_calls_total", ())] == 3
    assert samples[("paperboy_esp_errors_total", ())] == 0


def test_deliveries_of_the_window_are_counted_by_status(client, token, settings):
    settings.METRICS_WINDOW_DAYS = 3
    reader = make_reader("w@example.org", ["agents"])
    other = make_reader("x@example.org", ["agents"])
    today = timezone.now().date()
    Delivery.objects.create(subscriber=reader, edition=today, status=Delivery.Status.SENT)
    Delivery.objects.create(
        subscriber=other, edition=today - timedelta(days=1), status=Delivery.Status.FAILED
    )
    Delivery.objects.create(
        subscriber=reader, edition=today - timedelta(days=10), status=Delivery.Status.SENT
    )

    samples = scrape(client)

    recent = by_status(samples, "paperboy_deliveries")
    assert (recent["sent"], recent["failed"], recent["planned"]) == (1, 1, 0)
    current = by_status(samples, "paperboy_current_edition_deliveries")
    assert (current["sent"], current["failed"]) == (1, 0)


def test_age_of_the_oldest_planned_delivery(client, token):
    reader = make_reader("p@example.org", ["agents"])
    other = make_reader("q@example.org", ["agents"])
    assert scrape(client)[("paperboy_oldest_planned_delivery_age_seconds", ())] == 0
    today = timezone.now().date()
    waiting = Delivery.objects.create(subscriber=reader, edition=today, status=Delivery.Status.PLANNED)
    Delivery.objects.filter(pk=waiting.pk).update(created_at=timezone.now() - timedelta(minutes=30))
    Delivery.objects.create(subscriber=other, edition=today, status=Delivery.Status.PLANNED)

    age = scrape(client)[("paperboy_oldest_planned_delivery_age_seconds", ())]
    assert 30 * 60 <= age < 31 * 60


class FlakyConnection:
    """Fails the first `failures` calls (by default as an unreachable server), then accepts."""

    def __init__(self, failures: int, error: Exception | None = None):
        self.failures = failures
        self.error = error or ConnectionRefusedError("connection refused")
        self.calls = 0

    def send_messages(self, messages):
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return len(messages)


def test_send_path_counts_esp_calls_and_errors(client, token, settings):
    from django.core.mail import EmailMessage

    settings.DIGEST_SEND_ATTEMPTS = 3
    message = EmailMessage(subject="s", body="b", to=["a@example.org"])
    send_with_retries(FlakyConnection(failures=2), message, sleep=lambda _: None)
    with pytest.raises(PermanentSendError):
        send_with_retries(
            FlakyConnection(failures=1, error=ValueError("bad payload")), message, sleep=lambda _: None
        )

    samples = scrape(client)
    assert samples[("paperboy_esp_calls_total", ())] == 4  # three tries, then one refused call
    assert samples[("paperboy_esp_errors_total", ())] == 3


def test_esp_counts_cannot_go_down():
    with pytest.raises(ValueError, match="cannot be negative"):
        esp_calls_record(ok=-1, errors=0)


def test_a_cache_outage_does_not_stop_sending(monkeypatch, caplog):
    from django.core.cache.backends.redis import RedisCache

    # Nothing listens on port 1.
    monkeypatch.setattr("digest.metrics.cache", RedisCache("redis://127.0.0.1:1/0", {}))
    esp_calls_record(ok=1, errors=0)
    esp_calls_flush()
    assert "could not count ESP calls" in caplog.text


def test_esp_counts_reach_the_cache_once_a_second_not_once_a_call(monkeypatch):
    from django.core.cache import cache

    esp_calls_flush()
    writes = []
    real_incr = cache.incr
    monkeypatch.setattr(cache, "incr", lambda key, amount: writes.append(key) or real_incr(key, amount))
    before = cache.get(ESP_CALLS_KEY) or 0
    for _ in range(200):
        esp_calls_record(ok=1, errors=0)
    assert len(writes) <= 2  # at most one flush fell due while the loop ran
    esp_calls_flush()
    assert cache.get(ESP_CALLS_KEY) == before + 200


# --- Queue lag (real Redis) -----------------------------------------------------------------------


@pytest.mark.services
def test_queue_length_counts_tasks_waiting_in_redis(client, token, settings, redis_url):
    import redis
    from celery import Celery

    queue = f"metrics-{uuid.uuid4().hex[:8]}"
    settings.REDIS_URL = redis_url
    settings.CELERY_TASK_DEFAULT_QUEUE = queue
    # A publisher of its own, so no worker anywhere takes the tasks off the queue.
    publisher = Celery("metrics-test", broker=redis_url, set_as_current=False)
    try:
        for _ in range(3):
            publisher.send_task("digest.healthcheck", queue=queue)
        publisher.send_task("digest.healthcheck", queue=queue, priority=5)
        assert celery_queue_length(queue) == 4
        samples = scrape(client)
        assert samples[("paperboy_celery_queue_length", (("queue", queue),))] == 4
    finally:
        publisher.close()
        redis_client = redis.Redis.from_url(redis_url)
        redis_client.delete(queue, *(f"{queue}\x06\x16{step}" for step in (3, 6, 9)))
        redis_client.close()


def test_an_unreachable_broker_leaves_the_queue_series_out(client, token, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    samples = scrape(client)
    assert not any(name == "paperboy_celery_queue_length" for name, _ in samples)
    assert ("paperboy_subscribers", (("status", "active"),)) in samples
