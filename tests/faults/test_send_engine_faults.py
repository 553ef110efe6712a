"""The sending engine against an ESP that behaves like a real one (it takes its
time, keeps a message even when the client goes away, throttles with 429 and
sometimes answers garbage), with real Celery workers on Redis and PostgreSQL:
every due reader ends with exactly one digest, or a recorded, visible reason."""

import os
import signal
import time

from digest.models import Delivery, DigestRun
from digest.services.runs import deliveries_resend
from digest.tasks import nightly_run, recover_runs
from tests.digest.builders import EDITION
from tests.fake_esp import FakeESP
from tests.faults.conftest import (
    SlowESP,
    assert_one_digest_or_recorded_failure,
    esp_env,
    on_real_services,
    seed_readers,
    wait_for_night,
)
from tests.support import wait_for

pytestmark = on_real_services()


def start_night(worker) -> None:
    nightly_run.apply_async(args=[EDITION.isoformat(), False], queue=worker.queue)


def test_a_chunk_that_outlives_its_lease_timeout_is_never_sent_twice(
    postgres_required, celery_worker_factory
):
    emails = seed_readers(40)
    with SlowESP(delay=0.15) as esp:
        # One chunk of 40 at 0.15 s a call, two at a time: about 3 s, three times the lease.
        env = esp_env(esp, DIGEST_CHUNK_SIZE=40, DIGEST_CLAIM_TIMEOUT=1, DIGEST_SEND_CONCURRENCY=2)
        worker = celery_worker_factory(concurrency=2, extra_env=env)
        start_night(worker)
        wait_for(lambda: esp.stats()["accepted"] >= 2, timeout=30, message="sending to start")
        # Recovery keeps looking for stale claims while the chunk is still sending.
        queued = 0
        while DigestRun.objects.get(edition=EDITION).status == DigestRun.Status.SENDING:
            queued += recover_runs.apply_async(queue=worker.queue).get(timeout=30)
            time.sleep(0.4)
        wait_for_night(EDITION, timeout=60, workers=[worker])
        outcome = assert_one_digest_or_recorded_failure(esp, emails, EDITION)
    assert outcome == {"sent": 40, "failed": 0}
    run = DigestRun.objects.get(edition=EDITION)
    assert run.sent_count == 40  # not 40 plus a second sender's copies
    assert queued == 0, "a live task's renewed lease never looks stale"


def test_a_429_storm_longer_than_every_retry_fails_nobody(postgres_required, celery_worker_factory):
    emails = seed_readers(20)
    with FakeESP() as esp:
        # 24 answers of 429: more than the tries per message (3) and per chunk (3) together.
        esp.set_faults(rate_limit_first=24, retry_after=1)
        env = esp_env(esp, DIGEST_MAX_ATTEMPTS=3, DIGEST_SEND_CONCURRENCY=4)
        worker = celery_worker_factory(extra_env=env)
        start_night(worker)
        (run,) = wait_for_night(EDITION, timeout=90, workers=[worker])
        assert esp.stats()["faulted"]["429"] == 24
        outcome = assert_one_digest_or_recorded_failure(esp, emails, EDITION)
    assert outcome == {"sent": 20, "failed": 0}
    assert (run.sent_count, run.failed_count) == (20, 0)
    # Throttling is not a failed attempt.
    assert set(Delivery.objects.filter(edition=EDITION).values_list("attempts", flat=True)) == {0}
    assert "every sender pauses 1.0s" in worker.log()


def test_workers_killed_while_the_esp_answers_never_send_twice(postgres_required, celery_worker_factory):
    emails = seed_readers(30)
    with SlowESP(delay=0.05, hold_after=4) as esp:
        env = esp_env(esp, DIGEST_CLAIM_TIMEOUT=2, DIGEST_SEND_CONCURRENCY=4)
        first = celery_worker_factory(extra_env=env)
        start_night(first)
        # Several calls wait for their answer; the ESP already has their messages.
        wait_for(lambda: esp.held >= 2, timeout=30, message="senders waiting for the ESP's answer")
        time.sleep(0.3)
        taken = esp.stats()["accepted"]
        os.kill(first.process.pid, signal.SIGKILL)
        first.process.wait(timeout=10)
        esp.release()
        in_flight = Delivery.objects.filter(edition=EDITION, status=Delivery.Status.INFLIGHT).count()
        assert in_flight >= 2, "the killed task left rows in flight"
        second = celery_worker_factory(queue=first.queue, extra_env=env)
        time.sleep(2.5)  # the dead task's lease runs out
        recover_runs.apply_async(queue=second.queue).get(timeout=30)
        wait_for_night(EDITION, timeout=60, workers=[first, second])
        outcome = assert_one_digest_or_recorded_failure(esp, emails, EDITION)
        searches = esp.stats()["searches"]
    assert outcome == {"sent": 30, "failed": 0}
    assert taken > 4 and searches >= 1  # the ESP was asked about the calls it had taken


def test_an_unreadable_200_counts_as_sent_and_is_never_sent_again(postgres_required, celery_worker_factory):
    emails = seed_readers(10)
    with FakeESP() as esp:
        esp.set_faults(garble_first=3)
        worker = celery_worker_factory(extra_env=esp_env(esp))
        start_night(worker)
        (run,) = wait_for_night(EDITION, timeout=60, workers=[worker])
        outcome = assert_one_digest_or_recorded_failure(esp, emails, EDITION)
        assert outcome == {"sent": 10, "failed": 0}
        assert (run.sent_count, run.failed_count) == (10, 0)
        unknown = Delivery.objects.filter(edition=EDITION, status=Delivery.Status.SENT, esp_message_id="")
        assert unknown.count() == 3
        assert all("id is unknown" in error for error in unknown.values_list("error", flat=True))
        # The admin's "re-send failed" finds nothing to send again.
        ids = list(Delivery.objects.filter(edition=EDITION).values_list("id", flat=True))
        assert deliveries_resend(delivery_ids=ids) == 0
        time.sleep(1)
        assert_one_digest_or_recorded_failure(esp, emails, EDITION)


def test_the_soft_time_limit_writes_what_was_sent_and_the_retry_sends_the_rest(
    postgres_required, celery_worker_factory
):
    emails = seed_readers(40)
    with SlowESP(delay=0.2) as esp:
        # One chunk of 40 at 0.2 s a call, two at a time: 4 s, twice the soft limit.
        env = esp_env(
            esp,
            DIGEST_CHUNK_SIZE=40,
            DIGEST_SEND_CONCURRENCY=2,
            CELERY_TASK_TIME_LIMIT=32,
            CELERY_TASK_SOFT_TIME_LIMIT=2,
        )
        worker = celery_worker_factory(concurrency=2, extra_env=env)
        start_night(worker)
        wait_for_night(EDITION, timeout=90, workers=[worker])
        outcome = assert_one_digest_or_recorded_failure(esp, emails, EDITION)
    assert outcome == {"sent": 40, "failed": 0}
    log = worker.log()
    assert "soft time limit reached" in log
    assert "SoftTimeLimitExceeded" not in log  # never a send error, never a crash
    assert "Hard time limit" not in log


def test_one_rate_limit_holds_for_all_workers_together(postgres_required, celery_worker_factory):
    emails = seed_readers(40)
    with FakeESP() as esp:
        env = esp_env(esp, DIGEST_ESP_RATE=10)
        workers = [celery_worker_factory(extra_env=env)]
        workers.append(celery_worker_factory(queue=workers[0].queue, extra_env=env))
        start_night(workers[0])
        wait_for_night(EDITION, timeout=90, workers=workers)
        outcome = assert_one_digest_or_recorded_failure(esp, emails, EDITION)
        times = sorted(message.at for message in esp.accepted)
        logs = [worker.log() for worker in workers]
    assert outcome == {"sent": 40, "failed": 0}
    assert all("digest.send_chunk" in log and "succeeded" in log for log in logs), "both workers sent"
    # In any one-second window, at most 10 messages (and the one that opens the window).
    busiest = max(sum(1 for t in times if start <= t < start + 1.0) for start in times)
    assert busiest <= 11, f"{busiest} messages within one second"
    assert times[-1] - times[0] >= 3.5  # 40 messages at 10 a second
