"""
The one HTTP helper every source uses.

It adds what a polite, robust scraper needs and nothing else: a User-Agent
naming the product, connect/read timeouts, retries with exponential backoff
on 5xx, 429 (honouring Retry-After up to a cap), connection errors and
timeouts, and a response-size cap enforced while streaming so a runaway
response never fills memory. Sleeping goes through an injectable function so
tests run fast.

It works without Django settings configured; the User-Agent then falls back
to the default below.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import requests

from digest.sources.base import SourceError

logger = logging.getLogger(__name__)

DEFAULT_USER_AGENT = "Paperboy/1.0 (+http://localhost:8000; personalised ML paper digest)"
DEFAULT_TIMEOUT = (5.0, 30.0)  # seconds to connect, seconds between bytes
DEFAULT_RETRIES = 3  # retries after the first attempt
DEFAULT_BACKOFF = 2.0  # first wait in seconds; doubles every retry
MAX_BACKOFF = 60.0
MAX_RETRY_AFTER = 120.0  # a server asking for more than this gets this
MAX_RESPONSE_BYTES = 10 * 1024 * 1024
_CHUNK = 64 * 1024


def user_agent() -> str:
    """SCRAPER_USER_AGENT from settings when Django is configured, else the default."""
    try:
        from django.conf import settings

        if settings.configured:
            return getattr(settings, "SCRAPER_USER_AGENT", "") or DEFAULT_USER_AGENT
    except ImportError:  # pragma: no cover - Django is always installed here
        pass
    return DEFAULT_USER_AGENT


def retry_after_seconds(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - (now or datetime.now(UTC))).total_seconds(), 0.0)


class _Retryable(Exception):
    def __init__(self, detail: str, wait: float | None = None):
        super().__init__(detail)
        self.detail = detail
        self.wait = wait


def fetch_text(
    url: str,
    *,
    source: str,
    params: Mapping[str, object] | None = None,
    timeout: float | tuple[float, float] = DEFAULT_TIMEOUT,
    retries: int = DEFAULT_RETRIES,
    backoff: float = DEFAULT_BACKOFF,
    max_retry_after: float = MAX_RETRY_AFTER,
    max_bytes: int = MAX_RESPONSE_BYTES,
    sleep: Callable[[float], None] = time.sleep,
    before_attempt: Callable[[], None] | None = None,
    session: requests.Session | None = None,
    not_found_ok: bool = False,
) -> str | None:
    """GET a URL and return its body as text; raise SourceError when it cannot.

    ``before_attempt`` runs before every attempt, retries included; the arXiv
    source passes its rate limiter there. With ``not_found_ok`` a 404 returns
    None instead of raising, for callers that try an older URL next.
    """
    http = session or requests
    headers = {"User-Agent": user_agent(), "Accept-Encoding": "gzip, deflate"}
    for attempt in range(retries + 1):
        if before_attempt is not None:
            before_attempt()
        try:
            return _attempt(http, url, params, headers, timeout, max_bytes, source, not_found_ok)
        except _Retryable as problem:
            if attempt == retries:
                raise SourceError(
                    source, url, f"gave up after {retries + 1} attempts: {problem.detail}"
                ) from None
            wait = min(backoff * (2**attempt), MAX_BACKOFF)
            if problem.wait is not None:
                wait = min(max(problem.wait, 0.0), max_retry_after)
            logger.warning(
                "%s: %s from %s; retry %d/%d in %.1fs",
                source,
                problem.detail,
                url,
                attempt + 1,
                retries,
                wait,
            )
            sleep(wait)
    raise AssertionError("unreachable")  # pragma: no cover


def _attempt(http, url, params, headers, timeout, max_bytes, source, not_found_ok) -> str | None:
    try:
        response = http.get(url, params=params, headers=headers, timeout=timeout, stream=True)
    except requests.Timeout as exc:
        raise _Retryable(f"timed out ({type(exc).__name__})") from None
    except requests.ConnectionError as exc:
        raise _Retryable(f"connection failed ({type(exc).__name__})") from None
    except requests.RequestException as exc:
        raise SourceError(source, url, f"request failed: {exc}") from None

    with response:
        status = response.status_code
        if status == 429:
            raise _Retryable(
                "HTTP 429 Too Many Requests", retry_after_seconds(response.headers.get("Retry-After"))
            )
        if status >= 500:
            raise _Retryable(f"HTTP {status}", retry_after_seconds(response.headers.get("Retry-After")))
        if status == 404 and not_found_ok:
            return None
        if status != 200:
            raise SourceError(source, response.url or url, f"unexpected HTTP {status}")

        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise SourceError(
                source, response.url or url, f"response of {declared} bytes is over the {max_bytes}-byte cap"
            )
        body = bytearray()
        try:
            for chunk in response.iter_content(_CHUNK):
                body.extend(chunk)
                if len(body) > max_bytes:
                    raise SourceError(
                        source, response.url or url, f"response is over the {max_bytes}-byte cap"
                    )
        except requests.Timeout:
            raise _Retryable("timed out while reading the body") from None
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
            raise _Retryable(f"connection broke while reading the body ({type(exc).__name__})") from None

        # JSON and the HF page are UTF-8; requests would guess Latin-1 for
        # text/* without a charset, so only trust an explicit charset.
        encoding = "utf-8"
        content_type = response.headers.get("Content-Type", "")
        if "charset=" in content_type.lower():
            encoding = response.encoding or "utf-8"
        try:
            return bytes(body).decode(encoding, errors="replace")
        except LookupError:
            return bytes(body).decode("utf-8", errors="replace")
