"""A run started from the admin in production mode: the request only queues it on Redis,
and a real Celery worker does the work while the run's page follows it."""

import re
import uuid

import pytest
from django.urls import reverse

from digest.models import Delivery, DigestRun
from tests.digest.builders import EDITION, make_paper, make_reader
from tests.support import wait_for


@pytest.mark.services
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_admin_start_queues_on_redis_and_a_worker_runs_it(
    postgres_required, celery_worker_factory, eager_celery, admin_client
):
    make_paper(1, topics={"reasoning": 0.9}, upvotes=40)
    make_reader("ada@example.org", ["reasoning"])
    queue = f"test-admin-{uuid.uuid4().hex[:10]}"
    eager_celery.conf.task_default_queue = queue
    try:
        response = admin_client.post("/admin/digest/digestrun/start/", {"edition": EDITION.isoformat()})
    finally:
        eager_celery.conf.task_default_queue = "celery"
    run = DigestRun.objects.get()
    assert response.status_code == 302
    # No worker listens yet: the request queued the run and did none of its work.
    assert run.status == DigestRun.Status.RUNNING and not Delivery.objects.exists()
    page = admin_client.get(reverse("admin:digest_digestrun_progress", args=[run.pk])).content.decode()
    assert 'id="run-status">Running<' in page and 'http-equiv="refresh"' in page

    worker = celery_worker_factory(queue=queue)

    def finished() -> bool:
        return DigestRun.objects.filter(pk=run.pk, status=DigestRun.Status.SUCCEEDED).exists()

    try:
        wait_for(finished, timeout=90, interval=0.3, message="the worker to finish the run")
    except BaseException:
        print(worker.log())
        raise
    page = admin_client.get(reverse("admin:digest_digestrun_progress", args=[run.pk])).content.decode()
    assert 'id="run-status">Succeeded<' in page and 'http-equiv="refresh"' not in page
    assert re.search(r'data-count="sent">\s*1<', page)
    assert Delivery.objects.get().status == Delivery.Status.SENT
