"""The shared fetch helper against a scripted server on 127.0.0.1."""

from datetime import date

import pytest

from digest.sources import hf_api, hf_page, http
from digest.sources.base import SourceError
from tests.digest.loopback import Reply


def _fetch(url, sleeps, **options):
    options.setdefault("backoff", 1.0)
    return http.fetch_text(url, source="hf", sleep=sleeps.append, **options)


def test_200_returns_the_body_and_sends_our_user_agent(loopback, settings):
    settings.SCRAPER_USER_AGENT = "Paperboy/1.0 (+https://digest.example.org)"
    loopback.on("/api", Reply(200, '[{"ok": "é"}]', {"Content-Type": "application/json"}))
    sleeps = []
    assert _fetch(loopback.url("/api"), sleeps, params={"date": "2026-03-04", "p": 0}) == '[{"ok": "é"}]'
    request = loopback.requests[0]
    assert request["headers"]["User-Agent"] == "Paperboy/1.0 (+https://digest.example.org)"
    assert request["query"] == "date=2026-03-04&p=0"
    assert sleeps == []


def test_user_agent_falls_back_to_a_default_naming_the_product():
    assert http.DEFAULT_USER_AGENT.startswith("Paperboy/1.0 (+http")


def test_429_waits_as_long_as_retry_after_says(loopback):
    loopback.on("/api", Reply(429, "slow down", {"Retry-After": "7"}), Reply(200, "[]"))
    sleeps = []
    assert _fetch(loopback.url("/api"), sleeps) == "[]"
    assert sleeps == [7.0]


def test_retry_after_is_capped(loopback):
    loopback.on("/api", Reply(429, "", {"Retry-After": "86400"}), Reply(200, "[]"))
    sleeps = []
    _fetch(loopback.url("/api"), sleeps, max_retry_after=30)
    assert sleeps == [30.0]


def test_retry_after_as_an_http_date_is_understood():
    from datetime import UTC, datetime

    now = datetime(2026, 3, 4, 12, 0, 0, tzinfo=UTC)
    assert http.retry_after_seconds("Wed, 04 Mar 2026 12:00:42 GMT", now=now) == 42.0
    assert http.retry_after_seconds("soon", now=now) is None


def test_5xx_is_retried_with_exponential_backoff(loopback):
    loopback.on("/api", Reply(500), Reply(502), Reply(503), Reply(200, "[]"))
    sleeps = []
    assert _fetch(loopback.url("/api"), sleeps, retries=3, backoff=1.0) == "[]"
    assert sleeps == [1.0, 2.0, 4.0]


def test_gives_up_after_the_last_retry_with_a_clear_error(loopback):
    loopback.on("/api", Reply(500))
    sleeps = []
    with pytest.raises(SourceError, match="gave up after 3 attempts: HTTP 500") as caught:
        _fetch(loopback.url("/api"), sleeps, retries=2)
    assert caught.value.url == loopback.url("/api")
    assert len(loopback.requests) == 3


def test_read_timeout_is_retried(loopback):
    loopback.on("/api", Reply(200, "[]", delay=1.0), Reply(200, "[1]"))
    sleeps = []
    assert _fetch(loopback.url("/api"), sleeps, timeout=(1.0, 0.2)) == "[1]"
    assert sleeps == [1.0]


def test_timeouts_every_time_end_in_a_source_error(loopback):
    loopback.on("/api", Reply(200, "[]", delay=1.0))
    with pytest.raises(SourceError, match="timed out"):
        _fetch(loopback.url("/api"), [], timeout=(1.0, 0.2), retries=1)


def test_connection_refused_is_retried_then_reported():
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sleeps = []
    with pytest.raises(SourceError, match="connection failed"):
        _fetch(f"http://127.0.0.1:{port}/api", sleeps, retries=2)
    assert sleeps == [1.0, 2.0]


def test_4xx_other_than_429_fails_at_once(loopback):
    loopback.on("/api", Reply(403, "forbidden"))
    sleeps = []
    with pytest.raises(SourceError, match="unexpected HTTP 403"):
        _fetch(loopback.url("/api"), sleeps)
    assert sleeps == [] and len(loopback.requests) == 1


def test_404_can_be_asked_for_as_none(loopback):
    assert _fetch(loopback.url("/missing"), [], not_found_ok=True) is None


def test_declared_body_over_the_cap_is_refused_without_reading(loopback):
    loopback.on("/big", Reply(200, b"x" * 5000))
    with pytest.raises(SourceError, match="5000 bytes is over the 1000-byte cap"):
        _fetch(loopback.url("/big"), [], max_bytes=1000)


def test_streamed_body_over_the_cap_is_cut_off(loopback):
    loopback.on("/big", Reply(200, b"x" * 300_000, content_length=False))
    with pytest.raises(SourceError, match="over the 100000-byte cap"):
        _fetch(loopback.url("/big"), [], max_bytes=100_000)


def test_hf_api_fetch_pages_against_the_loopback_server(loopback, fixture_text):
    responses = [fixture_text("hf_api_2024.json"), fixture_text("hf_api_2026.json"), "[]"]
    loopback.on("/api/daily_papers", *(Reply(200, body) for body in responses))
    records = hf_api.fetch(date(2024, 3, 12), base_url=loopback.url("/api/daily_papers"), sleep=[].append)
    assert len(records) == 6
    assert [r["query"] for r in loopback.requests] == [
        "date=2024-03-12&limit=100&p=0",
        "date=2024-03-12&limit=100&p=1",
        "date=2024-03-12&limit=100&p=2",
    ]


def test_hf_page_fetch_against_the_loopback_server(loopback, fixture_text, monkeypatch):
    monkeypatch.setattr(hf_page, "PAGE_URL", loopback.url("/papers/date/{day}"))
    loopback.on(
        "/papers/date/2026-03-04",
        Reply(429, "", {"Retry-After": "2"}),
        Reply(200, fixture_text("hf_page_escaped.html")),
    )
    sleeps = []
    records = hf_page.fetch(date(2026, 3, 4), sleep=sleeps.append)
    assert len(records) == 3 and sleeps == [2.0]
