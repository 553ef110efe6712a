"""Error tracking with Sentry, switched on by SENTRY_DSN and off without it."""

from __future__ import annotations


def sentry_init(*, dsn: str, environment: str, traces_sample_rate: float, release: str | None = None) -> bool:
    """Report unhandled errors of the web app and the Celery tasks to Sentry.

    Returns whether Sentry was initialised: with an empty DSN nothing is imported
    or sent. Personal data (readers' addresses, cookies) is not attached to events.
    """
    if not dsn:
        return False
    if not 0.0 <= traces_sample_rate <= 1.0:
        raise ValueError(f"SENTRY_TRACES_SAMPLE_RATE must be between 0 and 1, not {traces_sample_rate}")
    import sentry_sdk
    from sentry_sdk.integrations.celery import CeleryIntegration
    from sentry_sdk.integrations.django import DjangoIntegration

    sentry_sdk.init(
        dsn=dsn,
        environment=environment,
        release=release,
        traces_sample_rate=traces_sample_rate,
        send_default_pii=False,
        integrations=[DjangoIntegration(), CeleryIntegration(monitor_beat_tasks=False)],
    )
    return True
