"""Celery tasks for subscribers. Each takes ids, loads fresh rows and calls one service."""

from celery import shared_task

from subscribers import services
from subscribers.models import Subscriber


@shared_task(name="subscribers.send_confirmation_email", acks_late=True)
def send_confirmation_email(subscriber_id: int) -> bool:
    subscriber = Subscriber.objects.filter(pk=subscriber_id).first()
    if subscriber is None:  # deleted or purged before the task ran
        return False
    return services.subscriber_send_confirmation(subscriber=subscriber)


@shared_task(name="subscribers.send_manage_link_email", acks_late=True)
def send_manage_link_email(subscriber_id: int) -> bool:
    subscriber = Subscriber.objects.filter(pk=subscriber_id).first()
    if subscriber is None:
        return False
    return services.subscriber_send_manage_link(subscriber=subscriber)


@shared_task(name="subscribers.purge_pending_subscribers")
def purge_pending_subscribers(older_than_days: int = 14) -> int:
    return services.pending_subscribers_purge(older_than_days=older_than_days)
