"""Workers and the broker failing mid-run, with real Celery workers on PostgreSQL:
every due reader ends with exactly one digest or a recorded failure."""

import os
import signal
import time
from pathlib import Path

import pytest

from digest.models import Delivery, DigestRun
from digest.tasks import nightly_run, recover_runs
from tests.digest.builders import EDITION
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


def claimed_tokens() -> set[str]:
    """The ids of the send tasks holding rows (a claim token is the task id and a suffix)."""
    tokens = Delivery.objects.filter(
        edition=EDITION, status__in=(Delivery.Status.SENDING, Delivery.Status.INFLIGHT)
    ).values_list("claim_token", flat=True)
    return {token.split(":")[0] for token in tokens}


def pool_children(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(child) for child in children]


def gone(pid: int) -> bool:
    """The process has exited (a zombie has already closed its sockets)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def kill_mid_chunk(esp, worker, *, pids: list[int]) -> set[str]:
    """SIGKILL `pids` while a chunk waits for the ESP; returns the ids of the chunk
    tasks that died (their claim tokens: the rows they had claimed and not finished)."""
    try:
        wait_for(lambda: esp.held, timeout=30, message="a sender waiting for the ESP")
    except BaseException:
        print(worker.log()[-6000:])
        raise
    time.sleep(0.3)  # any other sender still busy parks at the ESP too
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    wait_for(lambda: all(gone(pid) for pid in pids), timeout=10, message="the killed processes to exit")
    esp.release()
    tokens = claimed_tokens()
    assert tokens, "a chunk was mid-send when its process died"
    return tokens


def test_worker_killed_mid_chunk_is_redelivered_by_redis_after_restart(
    postgres_required, celery_worker_factory
):
    emails = seed_readers(30)
    with SlowESP(delay=0.02, hold_after=4) as esp:
        # A short visibility timeout, so Redis hands the unacknowledged chunk to
        # the restarted worker within the test (production: an hour), and a short
        # lease, so the redelivered task takes over the rows its dead run left.
        env = esp_env(esp, CELERY_VISIBILITY_TIMEOUT=3, DIGEST_CLAIM_TIMEOUT=3)
        first = celery_worker_factory(extra_env=env)
        nightly_run.apply_async(args=[EDITION.isoformat(), False], queue=first.queue)
        killed = kill_mid_chunk(esp, first, pids=[first.process.pid])
        assert len(killed) == 1 and esp.stats()["accepted"] < 30
        time.sleep(3.5)  # the killed chunk's visibility timeout runs out
        second = celery_worker_factory(queue=first.queue, extra_env=env)
        wait_for_night(EDITION, timeout=60, workers=[first, second])
        outcome = assert_one_digest_or_recorded_failure(esp, emails, EDITION)
    assert outcome == {"sent": 30, "failed": 0}
    # The very task that died ran again: Redis redelivered it, and it took its
    # dead run's rows over once their lease ran out.
    (task_id,) = killed
    assert f"digest.send_chunk[{task_id}] received" in second.log()


def test_worker_killed_mid_chunk_is_recovered_by_the_periodic_check(postgres_required, celery_worker_factory):
    emails = seed_readers(30)
    with SlowESP(delay=0.02, hold_after=4) as esp:
        # Redis keeps the lost chunk for the production hour; the stale claim is
        # what brings it back here.
        env = esp_env(esp, DIGEST_CLAIM_TIMEOUT=2)
        first = celery_worker_factory(extra_env=env)
        nightly_run.apply_async(args=[EDITION.isoformat(), False], queue=first.queue)
        (task_id,) = kill_mid_chunk(esp, first, pids=[first.process.pid])
        second = celery_worker_factory(queue=first.queue, extra_env=env)
        # The other chunks go out; the killed one's rows stay claimed by a dead task.
        wait_for(
            lambda: (
                claimed_tokens() == {task_id}
                and not Delivery.objects.filter(edition=EDITION, status=Delivery.Status.PLANNED).exists()
            ),
            timeout=60,
            message="the surviving chunks to be sent",
        )
        time.sleep(2.5)  # the claims go stale
        assert recover_runs.apply_async(queue=second.queue).get(timeout=30) == 1
        wait_for_night(EDITION, timeout=60, workers=[first, second])
        outcome = assert_one_digest_or_recorded_failure(esp, emails, EDITION)
    assert outcome == {"sent": 30, "failed": 0}
    assert f"digest.send_chunk[{task_id}] received" not in second.log()


def test_pool_process_killed_mid_chunk_is_requeued_at_once(postgres_required, celery_worker_factory):
    emails = seed_readers(30)
    with SlowESP(delay=0.02, hold_after=4) as esp:
        worker = celery_worker_factory(concurrency=2, extra_env=esp_env(esp, DIGEST_CLAIM_TIMEOUT=2))
        nightly_run.apply_async(args=[EDITION.isoformat(), False], queue=worker.queue)
        wait_for(lambda: len(pool_children(worker.process.pid)) == 2, timeout=20, message="the pool")
        killed = kill_mid_chunk(esp, worker, pids=pool_children(worker.process.pid))
        wait_for_night(EDITION, timeout=60, workers=[worker])
        outcome = assert_one_digest_or_recorded_failure(esp, emails, EDITION)
    assert outcome == {"sent": 30, "failed": 0}
    log = worker.log()
    assert log.count("exited with 'signal 9 (SIGKILL)'") == 2
    # Each task that died ran again under its own id, long before the broker's
    # visibility timeout. Celery takes one of two paths: a job its process had
    # acknowledged fails with WorkerLostError and reject_on_worker_lost puts the
    # message back on the queue (it is received again); a job whose
    # acknowledgement the pool had not yet read is handed to a fresh process
    # without a second "received". The execution that was killed never logged
    # success, so a success line is a later run's.
    for task_id in killed:
        assert f"digest.send_chunk[{task_id}] succeeded" in log
    requeued = [task_id for task_id in killed if log.count(f"digest.send_chunk[{task_id}] received") >= 2]
    assert not requeued or "WorkerLostError" in log


def test_redis_restarted_mid_run_loses_queued_chunks_that_recovery_brings_back(
    postgres_required, celery_worker_factory, private_redis
):
    from celery import Celery

    emails = seed_readers(40)
    broker = Celery("fault-test", broker=private_redis.url, set_as_current=False)
    try:
        with SlowESP(delay=0.08) as esp:
            worker = celery_worker_factory(extra_env=esp_env(esp, REDIS_URL=private_redis.url))
            broker.send_task("digest.nightly_run", args=[EDITION.isoformat(), False], queue=worker.queue)
            wait_for(lambda: esp.stats()["accepted"] >= 12, timeout=30, message="the second chunk")
            private_redis.restart()  # no persistence: the queued chunks are gone
            # Recovery every second (beat's DIGEST_RECOVER_EVERY): a run that made
            # no progress between two checks gets its unsent rows queued again.
            deadline = time.monotonic() + 60
            while DigestRun.objects.get(edition=EDITION).status == DigestRun.Status.SENDING:
                if time.monotonic() > deadline:
                    print(worker.log()[-6000:])
                    pytest.fail("the run did not finish after Redis came back")
                try:
                    broker.send_task("digest.recover_runs", queue=worker.queue)
                except Exception as exc:  # the broker may still be coming back
                    print(f"recover_runs not queued: {exc}")
                time.sleep(1)
            wait_for_night(EDITION, timeout=30, workers=[worker])
            outcome = assert_one_digest_or_recorded_failure(esp, emails, EDITION)
        assert outcome == {"sent": 40, "failed": 0}
        assert "digest.recover_runs" in worker.log()
    finally:
        broker.close()


def test_the_same_night_started_three_times_at_once(postgres_required, celery_worker_factory):
    emails = seed_readers(30)
    with SlowESP(delay=0.02) as esp:
        worker = celery_worker_factory(concurrency=3, extra_env=esp_env(esp))
        results = [
            nightly_run.apply_async(args=[EDITION.isoformat(), False], queue=worker.queue) for _ in range(3)
        ]
        run_ids = [result.get(timeout=60) for result in results]
        runs = wait_for_night(EDITION, timeout=60, workers=[worker])
        outcome = assert_one_digest_or_recorded_failure(esp, emails, EDITION)
    assert outcome == {"sent": 30, "failed": 0}
    assert sorted(run_ids) == sorted(run.id for run in runs)
    assert {run.status for run in runs} == {DigestRun.Status.SUCCEEDED}
    # Each reader was planned once, by whichever run got there first.
    assert sum(run.due_count for run in runs) == 30
    assert sum(run.sent_count for run in runs) == 30
