import gc
import logging.config
import os
import sys
from typing import Any

from celery import Celery
from celery.signals import setup_logging, worker_process_init, worker_ready

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


@worker_ready.connect  # a solo or threads worker runs its tasks itself
@worker_process_init.connect  # each child of a prefork worker, once forked
def prepare_worker(**_: Any) -> None:
    """Before the first task: import what a send task needs (the send path, the
    ESP's anymail backend, the Redis client behind the cache, the URL patterns
    its links reverse and the digest's templates) rather than while the first
    chunk's readers wait, about a fifth of a second a worker; then tune the
    garbage collector and the thread switch for a long-lived sending process."""
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
    tune_garbage_collector()
    sys.setswitchinterval(WORKER_SWITCH_INTERVAL)


# A sending worker is one thread composing and dozens of sender threads that
# each hold the interpreter for a moment around an ESP call. Python makes a
# running thread hand over to a waiting one every 5 ms by default; at 20 ms
# there are fewer handovers, and 100k readers on the instant ESP take about 2%
# less worker CPU. A sender never waits for its call's answer holding the
# interpreter (I/O releases it), so calls in flight are not held back.
WORKER_SWITCH_INTERVAL = 0.02

# A night allocates millions of short-lived tuples and dicts; at Python's default
# (a collection every 700) the cyclic collector took about 7% of a worker's CPU.
WORKER_GC_THRESHOLD = (10_000, 10, 10)


def tune_garbage_collector() -> None:
    """Move everything loaded so far (Django, the app, the send path) out of the
    collector's sight, since it lives as long as the worker, and collect young
    objects less often: the collector's share of a sending worker's CPU falls
    from about 7% to 2%. Reference counting still frees nearly everything at once."""
    gc.freeze()
    gc.set_threshold(*WORKER_GC_THRESHOLD)
