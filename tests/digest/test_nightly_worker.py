"""The whole night through a real Celery worker on the real Redis and PostgreSQL,
sending over real HTTP to the fake ESP."""

import pytest

from digest.models import Delivery, DigestRun
from digest.tasks import nightly_run
from tests.digest.builders import EDITION, make_paper, make_reader
from tests.fake_esp import FakeESP
from tests.support import wait_for


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_real_worker_runs_the_whole_night(postgres_required, celery_worker_factory, settings):
    settings.DIGEST_CHUNK_SIZE = 7  # several chunks, so fan-out really happens
    make_paper(1, topics={"reasoning": 0.9}, upvotes=40)
    make_paper(2, topics={"agents": 0.8}, upvotes=10)
    make_paper(3, topics={"video": 0.9}, upvotes=3)
    readers = [make_reader(f"w{i}@example.org", ["reasoning", "agents"]) for i in range(20)]
    make_reader("nothing@example.org", ["robotics"])

    with FakeESP() as esp:
        worker = celery_worker_factory(
            concurrency=2,
            extra_env={
                "EMAIL_BACKEND": "anymail.backends.postmark.EmailBackend",
                "ANYMAIL_POSTMARK_SERVER_TOKEN": "worker-token",
                "ANYMAIL_POSTMARK_API_URL": esp.url,
                "DIGEST_CHUNK_SIZE": "7",
                "SITE_URL": "https://digest.example.org",
            },
        )
        run_id = nightly_run.apply_async(args=[EDITION.isoformat(), False], queue=worker.queue).get(
            timeout=90
        )

        def finished():
            run = DigestRun.objects.get(id=run_id)
            return run if run.status == DigestRun.Status.SUCCEEDED else None

        try:
            run = wait_for(finished, timeout=90, interval=0.3, message="the run to finish")
        except BaseException:
            print(worker.log())
            raise

        counts = esp.state.recipients()
        assert set(counts) == {r.email for r in readers}
        assert set(counts.values()) == {1}
        assert esp.stats()["invalid"] == 0
        assert (run.due_count, run.sent_count, run.empty_count, run.failed_count) == (21, 20, 1, 0)
        assert Delivery.objects.filter(status=Delivery.Status.SENT).count() == 20
        assert "send_chunk" in worker.log()
