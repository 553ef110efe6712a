"""Celery tasks for subscribers. Each takes ids (or nothing), loads fresh rows and calls one service."""

from celery import shared_task

from subscribers import outbox, services


@shared_task(name="subscribers.drain_outgoing_email", acks_late=True, ignore_result=True)
def drain_outgoing_email() -> int:
    """Send the confirmation and link emails waiting in the outbox (also run by beat)."""
    return outbox.outgoing_email_drain()


@shared_task(name="subscribers.purge_pending_subscribers")
def purge_pending_subscribers(older_than_days: int = 14) -> int:
    purged = services.pending_subscribers_purge(older_than_days=older_than_days)
    outbox.outgoing_emails_purge()
    return purged
