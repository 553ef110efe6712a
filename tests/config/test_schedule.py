"""The beat schedule lives in the database: seeded after migrate, edited in the admin."""

import pytest
from celery.schedules import crontab
from django.apps import apps as django_apps
from django.conf import settings
from django.urls import reverse
from django_celery_beat.models import CrontabSchedule, PeriodicTask
from django_celery_beat.schedulers import DatabaseScheduler

from config.celery_app import app
from config.schedule import periodic_task_seeds, periodic_tasks_seed, send_time

pytestmark = pytest.mark.django_db

EXPECTED_TASKS = {
    "nightly-digest": "digest.nightly_run",
    "recover-stalled-runs": "digest.recover_runs",
    "purge-old-deliveries": "digest.purge_old_deliveries",
    "drain-outgoing-email": "subscribers.drain_outgoing_email",
    "purge-unconfirmed-signups": "subscribers.purge_pending_subscribers",
}


def test_migrate_seeded_every_periodic_task_with_its_schedule():
    rows = {task.name: task for task in PeriodicTask.objects.select_related("crontab", "interval")}
    assert {name: rows[name].task for name in EXPECTED_TASKS} == EXPECTED_TASKS
    assert all(rows[name].enabled for name in EXPECTED_TASKS)

    nightly = rows["nightly-digest"].crontab
    hour, minute = settings.DIGEST_SEND_TIME.split(":")
    assert (nightly.minute, nightly.hour, nightly.day_of_week, str(nightly.timezone)) == (
        str(int(minute)),
        str(int(hour)),
        "*",
        "UTC",
    )
    recover = rows["recover-stalled-runs"].interval
    assert (recover.every, recover.period) == (settings.DIGEST_RECOVER_EVERY, "seconds")
    purge = rows["purge-unconfirmed-signups"].crontab
    assert (purge.hour, purge.minute) == ("3", "15")


def test_every_seeded_task_is_a_registered_celery_task():
    app.loader.import_default_modules()
    assert {seed.task for seed in periodic_task_seeds()} <= set(app.tasks)


def test_seed_follows_digest_send_time(settings):
    PeriodicTask.objects.all().delete()
    settings.DIGEST_SEND_TIME = "21:45"
    created = periodic_tasks_seed(apps=django_apps)
    assert set(created) == set(EXPECTED_TASKS)
    crontab = PeriodicTask.objects.get(name="nightly-digest").crontab
    assert (crontab.hour, crontab.minute) == ("21", "45")


def test_seeding_again_keeps_what_the_admin_changed(settings):
    nightly = PeriodicTask.objects.get(name="nightly-digest")
    nightly.crontab = CrontabSchedule.objects.create(minute="30", hour="4", timezone="UTC")
    nightly.save()
    PeriodicTask.objects.filter(name="purge-unconfirmed-signups").update(enabled=False)
    count = PeriodicTask.objects.count()

    settings.DIGEST_SEND_TIME = "06:00"
    assert periodic_tasks_seed(apps=django_apps) == []

    assert PeriodicTask.objects.count() == count
    assert PeriodicTask.objects.get(name="nightly-digest").crontab.hour == "4"
    assert PeriodicTask.objects.get(name="purge-unconfirmed-signups").enabled is False


def test_a_deleted_task_comes_back_at_the_next_migrate():
    PeriodicTask.objects.filter(name="recover-stalled-runs").delete()
    assert periodic_tasks_seed(apps=django_apps) == ["recover-stalled-runs"]
    assert PeriodicTask.objects.filter(name="recover-stalled-runs").exists()


@pytest.mark.parametrize("value", ["6", "24:00", "06:60", "six", "06:00:00"])
def test_malformed_send_time_is_a_clear_error(settings, value):
    settings.DIGEST_SEND_TIME = value
    with pytest.raises(ValueError, match="DIGEST_SEND_TIME must be HH:MM"):
        send_time()


def test_admin_edits_the_nightly_time_and_beat_reads_it(admin_client):
    nightly = PeriodicTask.objects.get(name="nightly-digest")
    change_url = reverse("admin:django_celery_beat_periodictask_change", args=[nightly.pk])
    assert admin_client.get(change_url).status_code == 200

    later = CrontabSchedule.objects.create(minute="0", hour="7", timezone="UTC")
    response = admin_client.post(
        change_url,
        {
            "name": nightly.name,
            "regtask": nightly.task,
            "task": "",
            "description": nightly.description,
            "enabled": "on",
            "crontab": later.pk,
            "args": "[]",
            "kwargs": "{}",
            "priority": "",
            "expires_0": "",
            "expires_1": "",
            "expire_seconds": "",
            "queue": "",
            "exchange": "",
            "routing_key": "",
            "headers": "{}",
            "start_time_0": "",
            "start_time_1": "",
            "_save": "Save",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    nightly.refresh_from_db()
    assert nightly.crontab_id == later.pk

    # What beat builds from the row: the edited schedule, due at 07:00 UTC.
    entry = DatabaseScheduler.Entry(nightly, app=app)
    assert entry.task == "digest.nightly_run"
    assert entry.schedule == crontab(minute=0, hour=7)


def test_celery_app_uses_the_database_scheduler_and_no_static_schedule():
    assert app.conf.beat_scheduler == "django_celery_beat.schedulers:DatabaseScheduler"
    # A static entry would be written over the admin's edits each time beat starts.
    assert app.conf.beat_schedule == {}


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_real_beat_sends_what_the_admin_scheduled(postgres_required, redis_url, tmp_path):
    """`celery beat` with the settings' scheduler, on the real database and broker."""
    import subprocess
    import sys
    import uuid

    import redis
    from django_celery_beat.models import IntervalSchedule

    from tests.support import BASE_DIR, WorkerProcess, app_env, test_database_url, wait_for

    queue = f"beat-{uuid.uuid4().hex[:8]}"
    recover = PeriodicTask.objects.get(name="recover-stalled-runs")
    recover.interval = IntervalSchedule.objects.create(every=1, period=IntervalSchedule.SECONDS)
    recover.save()
    log_path = tmp_path / "beat.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "beat",
                "--loglevel",
                "INFO",
                "--max-interval",
                "1",
            ],
            cwd=BASE_DIR,
            env=app_env(
                DATABASE_URL=test_database_url(), REDIS_URL=redis_url, CELERY_TASK_DEFAULT_QUEUE=queue
            ),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    beat = WorkerProcess(process, queue, log_path)
    client = redis.Redis.from_url(redis_url)
    try:
        wait_for(
            lambda: client.llen(queue) >= 2, timeout=60, interval=0.5, message="beat to queue the task twice"
        )
        assert "DatabaseScheduler" in beat.log()
        assert "Sending due task recover-stalled-runs (digest.recover_runs)" in beat.log()
    except BaseException:
        print(beat.log())
        raise
    finally:
        beat.stop(timeout=5)
        client.delete(queue)
        client.close()
