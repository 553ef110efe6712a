"""An unwell ESP, through a real Celery worker on Redis and PostgreSQL: every due
reader ends with exactly one digest or a recorded failure."""

from digest.models import DigestRun
from digest.tasks import nightly_run
from tests.digest.builders import EDITION
from tests.fake_esp import FakeESP
from tests.faults.conftest import (
    assert_one_digest_or_recorded_failure,
    esp_env,
    on_real_services,
    seed_readers,
    wait_for_night,
)

pytestmark = on_real_services(timeout=120)


def night_on_a_worker(celery_worker_factory, env: dict, *, concurrency: int = 1, timeout: float = 60):
    """The edition's night on a real worker with these settings, waited out: the worker and the run."""
    worker = celery_worker_factory(concurrency=concurrency, extra_env=env)
    nightly_run.apply_async(args=[EDITION.isoformat(), False], queue=worker.queue).get(timeout=60)
    (run,) = wait_for_night(EDITION, timeout=timeout, workers=[worker])
    return worker, run


def test_a_fifth_of_esp_calls_failing_with_500(postgres_required, celery_worker_factory):
    emails = seed_readers(30)
    with FakeESP() as esp:
        esp.set_faults(fail_rate=0.2, seed=11)
        _worker, run = night_on_a_worker(celery_worker_factory, esp_env(esp), concurrency=2, timeout=90)
        assert esp.stats()["faulted"]["500"] >= 5
        outcome = assert_one_digest_or_recorded_failure(esp, emails, EDITION)
    assert run.status == DigestRun.Status.SUCCEEDED
    # Three tries per message and five per chunk: a 20% fault rate loses nobody.
    assert outcome == {"sent": 30, "failed": 0}
    assert (run.sent_count, run.failed_count) == (30, 0)


def test_esp_rate_limit_with_retry_after_is_waited_out(postgres_required, celery_worker_factory):
    emails = seed_readers(20)
    with FakeESP() as esp:
        # More 429s than one message's in-place tries: every sender pauses for the
        # ESP's Retry-After and tries again, without spending an attempt.
        esp.set_faults(rate_limit_first=4, retry_after=1)
        worker, _run = night_on_a_worker(celery_worker_factory, esp_env(esp))
        assert esp.stats()["faulted"]["429"] == 4
        outcome = assert_one_digest_or_recorded_failure(esp, emails, EDITION)
    assert outcome == {"sent": 20, "failed": 0}
    log = worker.log()
    assert "ESP rate limit (429); every sender pauses 1.0s" in log
    assert "retry: Retry in" not in log  # the chunk never went back to the broker for it


def test_esp_hanging_past_the_timeout_is_abandoned_and_retried(postgres_required, celery_worker_factory):
    emails = seed_readers(12)
    with FakeESP() as esp:
        # Each hung call would hold the worker for 20 s; EMAIL_TIMEOUT cuts it at 1 s.
        esp.set_faults(hang_first=2, hang_seconds=20)
        worker, _run = night_on_a_worker(celery_worker_factory, esp_env(esp, EMAIL_TIMEOUT=1))
        assert esp.stats()["faulted"]["hang"] == 2
        outcome = assert_one_digest_or_recorded_failure(esp, emails, EDITION)
    assert outcome == {"sent": 12, "failed": 0}
    log = worker.log()
    assert "no answer from the ESP" in log and "Read timed out" in log
    assert "timed out upstream" not in log  # the fake ESP's late answer was never waited for
    # The ESP was asked whether it had the hung calls' messages before they went again.
    assert esp.stats()["searches"] >= 2


def test_esp_refusing_for_good_ends_in_recorded_failures(postgres_required, celery_worker_factory):
    emails = seed_readers(10)
    with FakeESP() as esp:
        esp.set_faults(fail_rate=1.0)
        _worker, run = night_on_a_worker(
            celery_worker_factory, esp_env(esp, DIGEST_SEND_ATTEMPTS=2, DIGEST_MAX_ATTEMPTS=2)
        )
        outcome = assert_one_digest_or_recorded_failure(esp, emails, EDITION)
    assert outcome == {"sent": 0, "failed": 10}
    assert (run.status, run.failed_count) == (DigestRun.Status.SUCCEEDED, 10)
