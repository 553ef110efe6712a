import socket

from celery import shared_task

from digest.health import check_database


@shared_task(name="digest.healthcheck")
def healthcheck() -> dict:
    """Prove a worker is alive and can reach the database; returns who answered."""
    check_database()
    return {"worker": socket.gethostname(), "database": "ok"}
