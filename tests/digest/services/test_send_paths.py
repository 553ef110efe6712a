"""The fault scenarios every sending path must survive, run on both: one call per
reader (Postmark) and batches (SendGrid), over real HTTP to the loopback fake ESP."""

import pytest
from celery.exceptions import SoftTimeLimitExceeded

from digest.models import Delivery, DigestRun
from digest.services import send as send_service
from digest.services.runs import digest_run_start
from digest.services.send import claim, deliveries_send_chunk
from tests.digest.builders import EDITION
from tests.digest.sending_support import (
    DyingConnection,
    WorkerDied,
    assert_each_once,
    run_night,
)

pytestmark = pytest.mark.django_db


def planned_ids() -> tuple[DigestRun, list[int]]:
    run = digest_run_start(edition=EDITION, fetch=False)
    return run, list(Delivery.objects.filter(run=run).order_by("id").values_list("id", flat=True))


def test_every_reader_gets_one_message_with_its_id_recorded(esp_path, readers):
    run = run_night()
    assert run.sent_count == len(readers)
    assert_each_once(esp_path, readers)
    stored = set(Delivery.objects.values_list("esp_message_id", flat=True))
    assert all(stored) and len(stored) == len(readers)
    if esp_path.path == "single":
        # Postmark answers each call with the message's id; a batch's ids are anymail's own.
        assert stored == {message.message_id for message in esp_path.accepted}
    # Nobody is left in flight or with a claim.
    assert set(Delivery.objects.values_list("status", "claim_token")) == {(Delivery.Status.SENT, "")}
    one = esp_path.accepted[0]
    assert one.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert one.headers["Message-ID"].startswith("<digest.20261124.")
    assert "Why: Topic Reasoning" in one.text


def test_a_refused_recipient_fails_alone_with_the_reason(esp_path, readers):
    refused = readers[1]
    esp_path.set_faults(reject={refused.email})
    run = run_night()
    failed = Delivery.objects.get(subscriber=refused)
    assert failed.status == Delivery.Status.FAILED
    assert "recipient refused" in failed.error
    if esp_path.path == "batch":  # the error says which of the call's recipients it was
        assert refused.email in failed.error
    run.refresh_from_db()
    assert run.failed_count == 1
    assert run.sent_count == len(readers) - 1
    assert_each_once(esp_path, [reader for reader in readers if reader != refused])


def test_twenty_percent_500s_are_retried_without_duplicates(esp_path, readers, settings):
    settings.DIGEST_ESP_BATCH_SIZE = 2
    esp_path.set_faults(fail_rate=0.2, seed=7)
    run = run_night()
    assert esp_path.stats()["faulted"].get("500", 0) > 0
    assert_each_once(esp_path, readers)
    run.refresh_from_db()
    assert run.sent_count == len(readers) and run.failed_count == 0


def test_a_429_storm_longer_than_every_retry_budget_costs_no_attempt(esp_path, readers, settings):
    # More 429s than tries per message and per chunk together: before, they burnt
    # every row's attempts and failed the night.
    settings.DIGEST_SEND_ATTEMPTS = 2
    settings.DIGEST_MAX_ATTEMPTS = 2
    esp_path.set_faults(rate_limit_first=12, retry_after=0)
    run = run_night()
    assert esp_path.stats()["faulted"]["429"] == 12
    assert_each_once(esp_path, readers)
    run.refresh_from_db()
    assert (run.sent_count, run.failed_count) == (len(readers), 0)
    assert set(Delivery.objects.values_list("attempts", flat=True)) == {0}


def test_429_retry_after_pauses_every_sender(esp_path, readers, settings):
    from mail.ratelimit import esp_rate_limiter

    esp_path.set_faults(rate_limit_first=1, retry_after=3)
    paused = []
    limiter = esp_rate_limiter()
    real_pause = limiter.pause
    limiter.pause = lambda seconds: (paused.append(seconds), real_pause(0))[1]  # type: ignore[method-assign]
    run = run_night()
    assert paused == [3.0]
    assert run.sent_count == len(readers)
    assert_each_once(esp_path, readers)


def test_esp_hanging_past_timeout_is_asked_or_left_uncertain_never_resent_blindly(esp_path, readers):
    esp_path.set_faults(hang_first=1, hang_seconds=1.5)
    run = run_night()
    assert esp_path.stats()["faulted"]["hang"] == 1
    run.refresh_from_db()
    if esp_path.path == "single":
        # Postmark's message search says the hung call was never taken: sent again, once.
        assert_each_once(esp_path, readers)
        assert run.uncertain_count == 0
    else:
        # A read timeout means the ESP may have the batch; SendGrid cannot be asked.
        uncertain = set(
            Delivery.objects.filter(status=Delivery.Status.UNCERTAIN).values_list(
                "subscriber__email", flat=True
            )
        )
        assert run.uncertain_count == len(uncertain) > 0
        assert_each_once(esp_path, [r for r in readers if r.email not in uncertain])


def test_esp_down_for_good_ends_in_recorded_failures_not_loss(esp_path, readers, settings):
    settings.DIGEST_MAX_ATTEMPTS = 2
    settings.DIGEST_SEND_ATTEMPTS = 2
    esp_path.set_faults(fail_rate=1.0)
    run = run_night()
    run.refresh_from_db()
    assert set(Delivery.objects.values_list("status", flat=True)) == {Delivery.Status.FAILED}
    assert all("gave up after 2 attempts" in e for e in Delivery.objects.values_list("error", flat=True))
    assert run.status == DigestRun.Status.SUCCEEDED
    assert run.failed_count == len(readers)
    assert esp_path.state.recipients() == {}


def send_until_the_worker_dies(run: DigestRun, ids: list[int], *, claim_token: str) -> None:
    """Send the run's rows on a connection whose process dies before its second ESP call."""
    from django.core.mail import get_connection

    with pytest.raises(WorkerDied):
        deliveries_send_chunk(
            run_id=run.id,
            id_from=ids[0],
            id_to=ids[-1],
            claim_token=claim_token,
            connection=DyingConnection(get_connection(), die_after=1),
        )


def test_worker_death_mid_chunk_resends_only_what_the_esp_never_got(esp_path, readers, monkeypatch):
    run, ids = planned_ids()
    # The process vanishes before its second call: no bulk write of outcomes happens.
    real_write = send_service.deliveries_record_outcomes
    monkeypatch.setattr(send_service, "deliveries_record_outcomes", lambda **kwargs: None)
    send_until_the_worker_dies(run, ids, claim_token="task-1:a")
    first_call = esp_path.stats()["accepted"]
    assert first_call == (1 if esp_path.path == "single" else 5)
    in_flight = set(
        Delivery.objects.filter(status=Delivery.Status.INFLIGHT).values_list("subscriber__email", flat=True)
    )
    # The call that never went out was marked in flight first (and so, until the
    # outcomes are written, is the one the ESP took).
    never_got = len(in_flight - set(esp_path.state.recipients()))
    assert never_got == (1 if esp_path.path == "single" else 5)

    # The lease of the dead task runs out; a new task takes the rows over.
    Delivery.objects.update(claimed_at="2000-01-01T00:00:00Z")
    monkeypatch.setattr(send_service, "deliveries_record_outcomes", real_write)
    result = deliveries_send_chunk(run_id=run.id, id_from=ids[0], id_to=ids[-1], claim_token="task-1:b")
    statuses = dict(Delivery.objects.values_list("subscriber__email", "status"))
    counts = esp_path.state.recipients()
    assert not [email for email, n in counts.items() if n > 1], "nobody gets two"
    if esp_path.path == "single":
        # Postmark's message search says the ESP never got the dying call: sent once now.
        assert esp_path.stats()["searches"] >= 1
        assert_each_once(esp_path, readers)
        assert set(statuses.values()) == {Delivery.Status.SENT}
    else:
        # SendGrid cannot be asked: the rows of the dying call stay uncertain (at most once).
        uncertain = {email for email, status in statuses.items() if status == Delivery.Status.UNCERTAIN}
        assert len(uncertain) == never_got and not uncertain & set(counts)
        assert result.uncertain == never_got
        assert set(counts) | uncertain == {r.email for r in readers}
        assert DigestRun.objects.get(id=run.id).uncertain_count == never_got


def test_uncertain_rows_are_sent_again_when_the_setting_says_resend(esp_path, readers, monkeypatch, settings):
    settings.DIGEST_UNCERTAIN = "resend"
    run, ids = planned_ids()
    monkeypatch.setattr(send_service, "deliveries_record_outcomes", lambda **kwargs: None)
    send_until_the_worker_dies(run, ids, claim_token="t:a")
    monkeypatch.undo()
    Delivery.objects.update(claimed_at="2000-01-01T00:00:00Z")
    deliveries_send_chunk(run_id=run.id, id_from=ids[0], id_to=ids[-1], claim_token="t:b")
    assert_each_once(esp_path, readers)


def test_soft_time_limit_writes_what_was_sent_and_releases_the_rest(esp_path, readers, monkeypatch, settings):
    settings.DIGEST_SEND_CONCURRENCY = 1
    settings.DIGEST_ESP_BATCH_SIZE = 2
    run, ids = planned_ids()
    real_merge = send_service._Chunk._merge
    merged = []

    def merge_then_time_out(self, outcome):
        real_merge(self, outcome)
        merged.append(outcome)
        if len(merged) == 2:
            # Celery raises it in the task's thread, here while it waits for the ESP's answers.
            raise SoftTimeLimitExceeded()

    monkeypatch.setattr(send_service._Chunk, "_merge", merge_then_time_out)
    result = deliveries_send_chunk(run_id=run.id, id_from=ids[0], id_to=ids[-1], claim_token="soft")
    monkeypatch.undo()
    assert result.interrupted
    sent = esp_path.stats()["accepted"]
    assert 0 < sent < len(readers)
    assert result.sent == sent and result.failed == 0 and result.errors == []
    rows = list(Delivery.objects.values_list("status", "attempts", "claim_token"))
    assert sum(1 for status, _, _ in rows if status == Delivery.Status.SENT) == sent
    # The rest is free again, with no attempt spent and no claim left.
    assert {(a, t) for s, a, t in rows if s != Delivery.Status.SENT} == {(0, "")}
    assert {s for s, _, _ in rows} == {Delivery.Status.SENT, Delivery.Status.PLANNED}
    # The task's retry sends the rest, once.
    deliveries_send_chunk(run_id=run.id, id_from=ids[0], id_to=ids[-1], claim_token="soft-2")
    assert_each_once(esp_path, readers)


def test_a_task_that_lost_its_lease_stops_and_writes_nothing_over_the_new_owner(
    esp_path, readers, monkeypatch, settings
):
    settings.DIGEST_SEND_CONCURRENCY = 1
    settings.DIGEST_ESP_BATCH_SIZE = 2
    run, ids = planned_ids()
    real_send = send_service._Chunk._send
    calls = []

    def send_then_lose_the_lease(self, job, *, connection):
        outcome = real_send(self, job, connection=connection)
        calls.append(job)
        if len(calls) == 1:
            # This task stalls past its lease; another task takes its rows over.
            Delivery.objects.update(claimed_at="2000-01-01T00:00:00Z")
            assert claim(run_id=run.id, id_from=ids[0], id_to=ids[-1], claim_token="new-owner") == len(ids)
        return outcome

    monkeypatch.setattr(send_service._Chunk, "_send", send_then_lose_the_lease)
    from django.core.mail import get_connection

    # Calls in this thread, so the takeover above runs inside the test's transaction.
    result = deliveries_send_chunk(
        run_id=run.id, id_from=ids[0], id_to=ids[-1], claim_token="old-owner", connection=get_connection()
    )
    monkeypatch.undo()
    assert len(calls) == 1, "no call after the lease was lost"
    assert result.interrupted and result.sent == 0  # nothing written over the new owner's rows
    assert set(Delivery.objects.values_list("claim_token", flat=True)) == {"new-owner"}
    # The new owner finds the first call in the send journal, or at the ESP.
    Delivery.objects.update(claimed_at="2000-01-01T00:00:00Z")
    deliveries_send_chunk(run_id=run.id, id_from=ids[0], id_to=ids[-1], claim_token="third")
    counts = esp_path.state.recipients()
    assert not [email for email, n in counts.items() if n > 1]
    statuses = set(Delivery.objects.values_list("status", flat=True))
    assert statuses <= {Delivery.Status.SENT, Delivery.Status.UNCERTAIN}
