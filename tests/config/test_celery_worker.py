"""A real `celery worker` process on the real Redis broker runs a task."""

import pytest

from digest.tasks import healthcheck


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_real_worker_runs_task_and_returns_result(celery_worker_factory, settings):
    from config.celery_app import app

    assert app.conf.broker_url == settings.REDIS_URL
    assert app.conf.task_always_eager is False
    worker = celery_worker_factory()

    result = healthcheck.apply_async(queue=worker.queue)
    try:
        value = result.get(timeout=60)
    except Exception:
        pytest.fail(f"worker did not answer; its log:\n{worker.log()}")

    assert value["database"] == "ok"
    assert value["worker"]
    assert result.successful()
    assert "ready" in worker.log()
