"""The outbox drained by a real Celery worker on the Redis broker."""

import email
from email import policy

import pytest

from subscribers.models import OutgoingEmail, Subscriber
from subscribers.outbox import outgoing_email_queue
from subscribers.tasks import drain_outgoing_email
from tests.subscribers.factories import SubscriberFactory


@pytest.mark.services
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_real_worker_sends_the_confirmation_to_the_outbox(celery_worker_factory, isolated_outbox):
    subscriber = SubscriberFactory(
        status=Subscriber.Status.PENDING, email="worker@example.org", topics=["code"]
    )
    row = outgoing_email_queue(kind=OutgoingEmail.Kind.CONFIRMATION, subscriber_id=subscriber.pk)
    worker = celery_worker_factory()

    result = drain_outgoing_email.apply_async(queue=worker.queue, ignore_result=False)
    try:
        assert result.get(timeout=60) == 1
    except Exception:
        pytest.fail(f"worker did not send; its log:\n{worker.log()}")

    row.refresh_from_db()
    assert row.sent_at is not None and row.attempts == 1 and not row.last_error
    files = list(isolated_outbox.glob("*.eml"))
    assert len(files) == 1
    message = email.message_from_bytes(files[0].read_bytes(), policy=policy.default)
    assert message["To"] == "worker@example.org"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert str(message["List-Unsubscribe"]).strip().startswith("<http://localhost:8000/unsubscribe/")
    text = message.get_body(preferencelist=("plain",)).get_content()
    html = message.get_body(preferencelist=("html",)).get_content()
    assert "/confirm/" in text and "/confirm/" in html
