"""The per-client signup limit, counted in the Django cache (Redis in production).

django-ratelimit's RATELIMIT_FAIL_OPEN covers a cache that answers badly, not
one that cannot be reached: a Redis connection error propagated and turned
every signup into a 500. An unreachable cache lets the signup through, with a
warning in the log, rather than turn every reader away.
"""

import logging

from django.conf import settings
from django.http import HttpRequest
from django_ratelimit.core import get_usage

from subscribers.clientip import client_ip

logger = logging.getLogger(__name__)

SIGNUP_GROUP = "subscribers.signup"
# Requests whose address could not be established share one bucket: behind a
# correctly configured proxy there are none, and they must not go unlimited.
UNESTABLISHED = "unestablished"


def _client_key(group: str, request: HttpRequest) -> str:
    return client_ip(request) or UNESTABLISHED


def signup_limited(request: HttpRequest) -> bool:
    """Count this signup POST; True when its client is over SIGNUP_RATE_LIMIT."""
    rate = settings.SIGNUP_RATE_LIMIT
    if not rate:
        return False
    try:
        usage = get_usage(
            request, group=SIGNUP_GROUP, key=_client_key, rate=rate, method="POST", increment=True
        )
    except Exception as exc:  # the cache is down: fail open, loudly
        logger.warning(
            "signup rate limit not checked, the cache is unavailable (%s: %s); letting the signup through",
            type(exc).__name__,
            exc,
        )
        return False
    return bool(usage and usage["should_limit"])
