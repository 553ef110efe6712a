from datetime import date

import pytest
from django.core import mail

from digest import tasks
from digest.models import Paper
from digest.services import IngestResult
from digest.sources.base import SourceError

pytestmark = pytest.mark.django_db


def test_fetch_task_runs_the_service_and_returns_counts(monkeypatch):
    calls = []

    def fake(*, day, source):
        calls.append((day, source))
        return IngestResult(created=3, updated=1, unchanged=2, source="hf-page")

    monkeypatch.setattr("digest.services.papers_fetch", fake)
    result = tasks.fetch_papers_task.delay("2026-11-21", "hf").get()
    assert calls == [(date(2026, 11, 21), "hf")]
    assert result == {"day": "2026-11-21", "source": "hf-page", "created": 3, "updated": 1, "unchanged": 2}


def test_fetch_task_failure_mails_admins_and_stores_nothing(monkeypatch, settings):
    settings.ADMINS = [("Admin", "admin@example.org")]
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"

    def fail(*, day, source):
        raise SourceError(
            "hf", "https://huggingface.co/api/daily_papers?date=2026-11-21", "expected a JSON array"
        )

    monkeypatch.setattr("digest.services.papers_fetch", fail)
    with pytest.raises(SourceError):
        tasks.fetch_papers_task.delay("2026-11-21").get()
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert "Paper fetch for 2026-11-21 failed (hf)" in message.subject
    assert "expected a JSON array" in message.body and "date=2026-11-21" in message.body
    assert Paper.objects.count() == 0
