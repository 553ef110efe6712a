from datetime import timedelta

import pytest
from django.utils import timezone

from subscribers.models import DeletionRecord, Subscriber
from subscribers.tasks import purge_pending_subscribers
from tests.subscribers.factories import SubscriberFactory

pytestmark = pytest.mark.django_db


def test_unconfirmed_signups_older_than_14_days_are_purged():
    now = timezone.now()
    stale = SubscriberFactory(status=Subscriber.Status.PENDING, signup_at=now - timedelta(days=15))
    recent = SubscriberFactory(status=Subscriber.Status.PENDING, signup_at=now - timedelta(days=13))
    old_active = SubscriberFactory(status=Subscriber.Status.ACTIVE, signup_at=now - timedelta(days=400))

    assert purge_pending_subscribers.delay().get() == 1

    remaining = set(Subscriber.objects.values_list("pk", flat=True))
    assert stale.pk not in remaining
    assert {recent.pk, old_active.pk} <= remaining
    record = DeletionRecord.objects.get()
    assert (record.reason, record.count) == ("unconfirmed", 1)
    # Nothing left to purge: a second run changes nothing.
    assert purge_pending_subscribers.delay().get() == 0
    assert DeletionRecord.objects.get().count == 1


def test_purge_runs_every_night_from_celery_beat():
    from django_celery_beat.models import PeriodicTask

    entry = PeriodicTask.objects.get(name="purge-unconfirmed-signups")
    assert entry.task == purge_pending_subscribers.name
    assert entry.enabled and (entry.crontab.hour, entry.crontab.minute) == ("3", "15")
