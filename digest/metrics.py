"""Prometheus metrics at /metrics, computed when Prometheus scrapes.

Runs, deliveries, signups and the queues live in PostgreSQL and Redis, so every
scrape reads them there: the web process answering the scrape is not the worker
that did the work, and counters kept in its memory would count nothing. The one
thing the database does not record, ESP calls and their errors, is counted in
the Django cache (Redis in production) by `esp_calls_record`, which the send path
calls after every message or batch it hands to the ESP; each process adds its
counts to the cache about once a second.

In the embedded mode the cache is local memory: the counts are those of the
process that serves /metrics.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db.models import Count, Min
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseForbidden
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

ESP_CALLS_KEY = "metrics:esp:calls"
ESP_ERRORS_KEY = "metrics:esp:errors"
# Kombu's Redis transport keeps each priority level of a queue in its own list.
KOMBU_PRIORITY_SEPARATOR = "\x06\x16"
KOMBU_PRIORITY_STEPS = (3, 6, 9)


# --- ESP counters --------------------------------------------------------------------------


class _EspCallTally:
    """ESP calls counted in this process and not yet added to the cache.

    A night makes hundreds of calls a second, and two cache round trips per call
    cost more than many a call's own work, so senders add to this tally and it
    reaches the cache at most once per FLUSH_SECONDS, at the end of every chunk,
    and before /metrics reads the counts. A worker killed between flushes loses
    at most that last second of counts; no delivery depends on them."""

    FLUSH_SECONDS = 1.0

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls = 0
        self.errors = 0
        self.flushed_at = time.monotonic()

    def add(self, *, ok: int, errors: int) -> None:
        with self.lock:
            self.calls += ok + errors
            self.errors += errors
            due = time.monotonic() - self.flushed_at >= self.FLUSH_SECONDS
        if due:
            self.flush()

    def flush(self) -> None:
        with self.lock:
            calls, errors, self.calls, self.errors = self.calls, self.errors, 0, 0
            self.flushed_at = time.monotonic()
        if not calls:
            return
        try:
            for key, amount in ((ESP_CALLS_KEY, calls), (ESP_ERRORS_KEY, errors)):
                if amount:
                    cache.add(key, 0, timeout=None)
                    cache.incr(key, amount)
        except Exception:  # the cache backend's own errors differ per backend
            logger.warning("could not count ESP calls in the cache", exc_info=True)


_tally = _EspCallTally()


def esp_calls_record(*, ok: int, errors: int) -> None:
    """Count ESP calls: `ok` that the ESP accepted, `errors` that failed (each retry is a call).

    Never raises: a cache outage must not stop a digest from going out.
    """
    if ok < 0 or errors < 0:
        raise ValueError(f"ESP call counts cannot be negative (ok={ok}, errors={errors})")
    _tally.add(ok=ok, errors=errors)


def esp_calls_flush() -> None:
    """Add this process's counts to the cache now (a chunk's end, a scrape)."""
    _tally.flush()


def esp_calls_counts() -> tuple[int, int]:
    """(calls, errors) counted so far."""
    esp_calls_flush()
    values = cache.get_many([ESP_CALLS_KEY, ESP_ERRORS_KEY])
    return int(values.get(ESP_CALLS_KEY) or 0), int(values.get(ESP_ERRORS_KEY) or 0)


# --- The collector ---------------------------------------------------------------------------


def _by_status(rows: Iterable[Mapping[str, Any]], statuses: Iterable[str]) -> dict[str, int]:
    """Counts for every known status, zero where none, so each series always exists."""
    counts = dict.fromkeys(statuses, 0)
    for row in rows:
        counts[str(row["status"])] = int(row["count"])
    return counts


def _gauge_by_status(name: str, documentation: str, counts: dict[str, int]) -> GaugeMetricFamily:
    gauge = GaugeMetricFamily(name, documentation, labels=["status"])
    for status, count in sorted(counts.items()):
        gauge.add_metric([status], count)
    return gauge


def celery_queue_length(queue: str) -> int:
    """Messages waiting in a Celery queue on the Redis broker, all priority levels together."""
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
    try:
        keys = [queue, *(f"{queue}{KOMBU_PRIORITY_SEPARATOR}{step}" for step in KOMBU_PRIORITY_STEPS)]
        pipeline = client.pipeline(transaction=False)
        for key in keys:
            pipeline.llen(key)
        return sum(int(length) for length in pipeline.execute())
    finally:
        client.close()


class PaperboyCollector(Collector):
    """Reads the product's state from the database and Redis at scrape time."""

    def collect(self) -> Iterator[Metric]:
        from digest.models import Delivery, DigestRun
        from subscribers.models import Subscriber

        since = timezone.now() - timedelta(days=settings.METRICS_WINDOW_DAYS)

        runs = DigestRun.objects.filter(started_at__gte=since).values("status").annotate(count=Count("id"))
        yield _gauge_by_status(
            "paperboy_digest_runs",
            f"Digest runs started in the last {settings.METRICS_WINDOW_DAYS} days, by status.",
            _by_status(runs, DigestRun.Status.values),
        )

        recent = Delivery.objects.filter(edition__gte=since.date())
        yield _gauge_by_status(
            "paperboy_deliveries",
            f"Deliveries of the editions of the last {settings.METRICS_WINDOW_DAYS} days, by status.",
            _by_status(recent.values("status").annotate(count=Count("id")), Delivery.Status.values),
        )

        edition = Delivery.objects.order_by("-edition").values_list("edition", flat=True).first()
        current = Delivery.objects.filter(edition=edition) if edition else Delivery.objects.none()
        yield _gauge_by_status(
            "paperboy_current_edition_deliveries",
            "Deliveries of the latest edition, by status.",
            _by_status(current.values("status").annotate(count=Count("id")), Delivery.Status.values),
        )
        edition_gauge = GaugeMetricFamily(
            "paperboy_current_edition_date_seconds", "The latest edition's day, as a Unix time (00:00 UTC)."
        )
        if edition:
            midnight = datetime(edition.year, edition.month, edition.day, tzinfo=UTC)
            edition_gauge.add_metric([], midnight.timestamp())
        yield edition_gauge

        oldest = Delivery.objects.filter(status=Delivery.Status.PLANNED).aggregate(oldest=Min("created_at"))
        age = GaugeMetricFamily(
            "paperboy_oldest_planned_delivery_age_seconds",
            "Seconds the oldest delivery still waiting to be sent has waited; 0 when none waits.",
        )
        age.add_metric(
            [], max(0.0, (timezone.now() - oldest["oldest"]).total_seconds()) if oldest["oldest"] else 0.0
        )
        yield age

        signups = Subscriber.objects.values("status").annotate(count=Count("id"))
        yield _gauge_by_status(
            "paperboy_subscribers", "Subscribers, by status.", _by_status(signups, Subscriber.Status.values)
        )

        calls, errors = esp_calls_counts()
        yield CounterMetricFamily("paperboy_esp_calls", "Calls to the ESP, retries included.", value=calls)
        yield CounterMetricFamily(
            "paperboy_esp_errors", "ESP calls that failed (transient or permanent).", value=errors
        )

        if settings.REDIS_URL:
            queue = settings.CELERY_TASK_DEFAULT_QUEUE
            length = GaugeMetricFamily(
                "paperboy_celery_queue_length", "Tasks waiting in the Celery queue.", labels=["queue"]
            )
            try:
                length.add_metric([queue], celery_queue_length(queue))
            except Exception:  # a broker outage shows as a missing series, not a failed scrape
                logger.warning("could not read the length of Celery queue %s", queue, exc_info=True)
            yield length


registry = CollectorRegistry()
registry.register(PaperboyCollector())


# --- The endpoint ----------------------------------------------------------------------------


def _networks(entries: Iterable[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(entry.strip(), strict=False) for entry in entries if entry.strip()]


def scrape_allowed(request: HttpRequest) -> bool:
    """A matching bearer token, or a client address in METRICS_ALLOWED_IPS.

    Raises Http404 when neither is configured: the endpoint is off.
    """
    token = settings.METRICS_TOKEN
    allowed = settings.METRICS_ALLOWED_IPS
    if not token and not allowed:
        raise Http404("metrics are not enabled")
    if token:
        scheme, _, offered = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(offered.strip().encode(), token.encode()):
            return True
    if allowed:
        try:
            address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
        except ValueError:
            return False
        return any(address in network for network in _networks(allowed))
    return False


@never_cache
@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    if not scrape_allowed(request):
        return HttpResponseForbidden("not allowed to read metrics\n", content_type="text/plain")
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
