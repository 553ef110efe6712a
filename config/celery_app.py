import logging.config
import os
from typing import Any

from celery import Celery
from celery.signals import setup_logging, worker_ready

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("paperdigest")
# Every Celery option lives in Django settings under the CELERY_ prefix.
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@setup_logging.connect
def use_django_logging(**_: Any) -> None:
    """Workers and beat log like the web app (LOG_FORMAT, run and delivery ids)
    instead of through Celery's own handler."""
    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)


@worker_ready.connect
def import_the_send_path(**_: Any) -> None:
    """Import what a send task needs (the send path, the ESP's anymail backend,
    the Redis client behind the cache, the URL patterns its links reverse and
    the digest's templates) before the first task, rather than while the first
    chunk's readers wait: about a fifth of a second a worker."""
    from django.conf import settings
    from django.urls import get_resolver
    from django.utils.module_loading import import_string

    import digest.services.runs
    import digest.services.send  # noqa: F401
    from mail.build import email_template

    import_string(settings.EMAIL_BACKEND)
    if "redis" in settings.CACHES["default"]["BACKEND"].lower():
        import redis  # noqa: F401
    get_resolver().reverse_dict  # noqa: B018  (reading it loads every URL pattern)
    for part in ("mjml", "txt"):
        email_template(f"emails/digest.{part}")
