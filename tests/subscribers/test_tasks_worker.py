"""The confirmation email task on a real Celery worker and Redis broker."""

import email
from email import policy

import pytest

from subscribers.models import Subscriber
from subscribers.tasks import send_confirmation_email
from tests.subscribers.factories import SubscriberFactory


@pytest.mark.services
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_real_worker_sends_the_confirmation_to_the_outbox(celery_worker_factory, isolated_outbox):
    subscriber = SubscriberFactory(
        status=Subscriber.Status.PENDING, email="worker@example.org", topics=["code"]
    )
    worker = celery_worker_factory()

    result = send_confirmation_email.apply_async(args=[subscriber.pk], queue=worker.queue)
    try:
        assert result.get(timeout=60) is True
    except Exception:
        pytest.fail(f"worker did not send; its log:\n{worker.log()}")

    files = list(isolated_outbox.glob("*.eml"))
    assert len(files) == 1
    message = email.message_from_bytes(files[0].read_bytes(), policy=policy.default)
    assert message["To"] == "worker@example.org"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert str(message["List-Unsubscribe"]).strip().startswith("<http://localhost:8000/unsubscribe/")
    text = message.get_body(preferencelist=("plain",)).get_content()
    html = message.get_body(preferencelist=("html",)).get_content()
    assert "/confirm/" in text and "/confirm/" in html
