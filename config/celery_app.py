import logging.config
import os
from typing import Any

from celery import Celery
from celery.signals import setup_logging

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
