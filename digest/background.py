"""Work an admin starts that must not hold up the request that started it.

In production the work is a Celery task, queued once the request's transaction
commits. In the embedded mode there is no broker and tasks run in the calling
process, so the task runs in a background thread started on commit instead:
the page answers at once and shows the work's progress from the database.
A thread dies with its process; a run cut off that way stays "running" in the
admin and can be started again (nobody gets a second digest for an edition).
"""

import logging
import threading
from collections.abc import Callable
from typing import Any

from celery import current_app
from django.db import connections, transaction

logger = logging.getLogger(__name__)

# The embedded mode's background threads, so tests and shutdown can wait for them.
threads: list[threading.Thread] = []


def in_process() -> bool:
    """True when tasks run in this process (the embedded mode, or eager tests)."""
    return bool(current_app.conf.task_always_eager)


def task_start_after_commit(
    task: Any, *args: Any, on_error: Callable[[BaseException], None] | None = None
) -> None:
    """Queue `task` with `args` on commit, or run it in a thread when there is no broker.

    `on_error` is called (in the thread) when the task raises, so the failure
    lands where the admin looks, e.g. on the run's row."""
    if in_process():
        transaction.on_commit(lambda: _start_thread(task, args, on_error))
    else:
        transaction.on_commit(lambda: task.delay(*args))


def _start_thread(task: Any, args: tuple, on_error: Callable[[BaseException], None] | None) -> None:
    thread = threading.Thread(
        target=_run, args=(task, args, on_error), name=f"admin-{task.name}", daemon=True
    )
    threads[:] = [t for t in threads if t.is_alive()]
    threads.append(thread)
    thread.start()


def _run(task: Any, args: tuple, on_error: Callable[[BaseException], None] | None) -> None:
    try:
        task(*args)
    except Exception as exc:
        logger.exception("%s%r failed", task.name, args)
        if on_error is not None:
            try:
                on_error(exc)
            except Exception:
                logger.exception("could not record the failure of %s", task.name)
    finally:
        connections.close_all()  # this thread's own connections


def wait_for_background(timeout: float = 60.0) -> None:
    """Wait for the background threads started so far (tests, and the demo)."""
    for thread in list(threads):
        thread.join(timeout)
