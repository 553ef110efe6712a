"""The periodic tasks Celery beat runs, stored in the database (django-celery-beat).

Beat reads its schedule from the PeriodicTask table, so an admin can change the
time of the nightly run, pause a housekeeping task or add one in the Django admin
without a deploy. The rows below are seeded after every `migrate`: a missing row
is created from the current settings (DIGEST_SEND_TIME, DIGEST_RECOVER_EVERY), an
existing row is never touched, so edits made in the admin survive upgrades.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from django.apps.registry import Apps
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS
from django.utils import timezone

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Crontab:
    minute: str
    hour: str
    day_of_week: str = "*"
    day_of_month: str = "*"
    month_of_year: str = "*"


@dataclass(frozen=True)
class PeriodicTaskSeed:
    name: str
    task: str
    description: str
    crontab: Crontab | None = None
    every_seconds: int | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)


def send_time() -> tuple[int, int]:
    """DIGEST_SEND_TIME ("HH:MM", UTC) as hour and minute; a clear error when malformed."""
    value = settings.DIGEST_SEND_TIME
    try:
        hour_text, minute_text = value.split(":")
        hour, minute = int(hour_text), int(minute_text)
    except ValueError:
        hour = minute = -1
    if not (0 <= hour <= 23 and 0 <= minute <= 59):
        raise ValueError(f"DIGEST_SEND_TIME must be HH:MM in UTC, e.g. 06:00, not {value!r}")
    return hour, minute


def periodic_task_seeds() -> list[PeriodicTaskSeed]:
    """Every periodic task the product needs, with its default schedule."""
    hour, minute = send_time()
    return [
        PeriodicTaskSeed(
            name="nightly-digest",
            task="digest.nightly_run",
            description="Fetch the day's papers, plan and send every due digest.",
            crontab=Crontab(minute=str(minute), hour=str(hour)),
        ),
        PeriodicTaskSeed(
            name="recover-stalled-runs",
            task="digest.recover_runs",
            description="Queue again the chunks of a run whose tasks were lost "
            "(a restarted broker, a killed worker).",
            every_seconds=settings.DIGEST_RECOVER_EVERY,
        ),
        PeriodicTaskSeed(
            name="drain-outgoing-email",
            task="subscribers.drain_outgoing_email",
            description="Send the confirmation and link emails a lost or refused task left behind.",
            every_seconds=settings.OUTGOING_EMAIL_DRAIN_EVERY,
        ),
        PeriodicTaskSeed(
            name="purge-old-deliveries",
            task="digest.purge_old_deliveries",
            description="Roll up and delete delivery rows older than DIGEST_DELIVERY_RETENTION_DAYS.",
            crontab=Crontab(minute="45", hour="3"),
        ),
        PeriodicTaskSeed(
            name="purge-unconfirmed-signups",
            task="subscribers.purge_pending_subscribers",
            description="Delete signups never confirmed within 14 days.",
            crontab=Crontab(minute="15", hour="3"),
        ),
    ]


def periodic_tasks_seed(*, apps: Apps, using: str = DEFAULT_DB_ALIAS) -> list[str]:
    """Create the periodic tasks that do not exist yet; returns the names created."""
    periodic_task = apps.get_model("django_celery_beat", "PeriodicTask")
    crontab_schedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    interval_schedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    existing = set(periodic_task.objects.using(using).values_list("name", flat=True))
    created: list[str] = []
    for seed in periodic_task_seeds():
        if seed.name in existing:
            continue
        schedule: dict[str, Any] = {}
        if seed.crontab is not None:
            schedule["crontab"], _ = crontab_schedule.objects.using(using).get_or_create(
                minute=seed.crontab.minute,
                hour=seed.crontab.hour,
                day_of_week=seed.crontab.day_of_week,
                day_of_month=seed.crontab.day_of_month,
                month_of_year=seed.crontab.month_of_year,
                timezone="UTC",
            )
        else:
            schedule["interval"], _ = interval_schedule.objects.using(using).get_or_create(
                every=seed.every_seconds, period="seconds"
            )
        periodic_task.objects.using(using).create(
            name=seed.name,
            task=seed.task,
            description=seed.description,
            kwargs=json.dumps(seed.kwargs),
            **schedule,
        )
        created.append(seed.name)
    if created:
        # Tell a running beat that the schedule changed.
        schedule_changes = apps.get_model("django_celery_beat", "PeriodicTasks")
        schedule_changes.objects.using(using).update_or_create(
            ident=1, defaults={"last_update": timezone.now()}
        )
        logger.info("seeded periodic tasks: %s", ", ".join(created))
    return created


def seed_after_migrate(*, apps: Apps, using: str = DEFAULT_DB_ALIAS, **_: Any) -> None:
    """post_migrate receiver: seed once django-celery-beat's tables exist."""
    try:
        apps.get_model("django_celery_beat", "PeriodicTask")
    except LookupError:  # migrating to a state before django-celery-beat's tables
        return
    periodic_tasks_seed(apps=apps, using=using)
