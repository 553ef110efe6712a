"""Liveness of the services the site depends on, for /healthz."""

import hmac
from collections.abc import Callable

from django.conf import settings
from django.db import connection


def check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def check_redis() -> None:
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    finally:
        client.close()


def service_checks() -> dict[str, Callable[[], None]]:
    """Name -> check callable, for the services this deployment is configured with."""
    checks = {"database": check_database}
    if settings.REDIS_URL:
        checks["redis"] = check_redis
    return checks


def run_health_checks(*, detail: bool = False) -> dict[str, str]:
    """Run each check; map service name to "ok" or "error".

    Error messages name hosts, ports and database names, which tell a stranger
    where the services live; they are added only with ``detail``.
    """
    results = {}
    for name, check in service_checks().items():
        try:
            check()
        except Exception as exc:  # any failure means the service is unusable
            results[name] = f"error: {exc.__class__.__name__}: {str(exc)[:200]}" if detail else "error"
        else:
            results[name] = "ok"
    return results


def detail_allowed(presented: str | None) -> bool:
    """Whether a /healthz request may see error details: it carries HEALTHZ_TOKEN."""
    expected = settings.HEALTHZ_TOKEN
    if not expected or not presented:
        return False
    return hmac.compare_digest(presented.encode(), expected.encode())
