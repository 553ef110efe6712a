"""Loaded into benchmark workers with `celery worker --include bench.probe`.

Counts every database round trip the worker makes and reports the running
total to Redis after each task, and marks the worker ready once it can take
tasks. Counting happens at the psycopg level, below Django, so nothing escapes
it: statements (Django's cursors and psycopg's own, such as the connection
health check), each FETCH from a server-side cursor, COPY, and transaction
control, where every COMMIT or ROLLBACK is counted twice to include the BEGIN
psycopg sends before the transaction's first statement.
"""

from __future__ import annotations

import os
import socket

import psycopg
from celery.signals import task_postrun, worker_ready

COUNTS = {"round_trips": 0}
QUEUE = os.environ.get("CELERY_TASK_DEFAULT_QUEUE", "celery")
HOST = f"{socket.gethostname()}:{os.getpid()}"


def _counted(method, per_call: int = 1):
    def wrapper(*args, **kwargs):
        COUNTS["round_trips"] += per_call
        return method(*args, **kwargs)

    wrapper.__wrapped__ = method
    return wrapper


def install() -> None:
    if getattr(psycopg.Cursor.execute, "__wrapped__", None):
        return
    psycopg.Cursor.execute = _counted(psycopg.Cursor.execute)
    psycopg.Cursor.executemany = _counted(psycopg.Cursor.executemany)
    psycopg.Cursor.copy = _counted(psycopg.Cursor.copy)
    psycopg.ServerCursor.execute = _counted(psycopg.ServerCursor.execute)
    psycopg.ServerCursor.fetchmany = _counted(psycopg.ServerCursor.fetchmany)
    psycopg.ServerCursor.close = _counted(psycopg.ServerCursor.close)
    psycopg.Connection.execute = _counted(psycopg.Connection.execute)
    psycopg.Connection.commit = _counted(psycopg.Connection.commit, per_call=2)
    psycopg.Connection.rollback = _counted(psycopg.Connection.rollback, per_call=2)


_client = None


def _redis():
    global _client
    if _client is None:
        import redis

        _client = redis.Redis.from_url(os.environ["REDIS_URL"])
    return _client


if os.environ.get("PAPERBOY_COUNT_QUERIES") == "1":
    install()


@worker_ready.connect
def _ready(**kwargs):
    _redis().hset(f"bench:{QUEUE}:ready", HOST, os.getpid())


@task_postrun.connect
def _report(**kwargs):
    _redis().hset(f"bench:{QUEUE}:round_trips", HOST, COUNTS["round_trips"])
