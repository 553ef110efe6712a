"""What the hostile-input tests share: every row a request could change, and hostile strings."""

import pytest
from django.core import mail
from django.db import transaction
from django.test import Client

from digest.models import Delivery, DigestRun, Feedback, Paper, PaperTopic, Topic
from subscribers.models import DeletionRecord, OutgoingEmail, Subscriber, SuppressionEvent

WATCHED = (
    Subscriber,
    Subscriber.topics.through,
    SuppressionEvent,
    DeletionRecord,
    Feedback,
    Delivery,
    DigestRun,
    OutgoingEmail,
)
WATCHED += (Paper, PaperTopic, Topic)

HOSTILE_STRINGS = [
    "",
    " ",
    "\x00",
    "\r\n",
    "a@example.org\r\nBcc: victim@example.org",
    "a@example.org\nSubject: hi",
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "javascript:alert(1)",
    "' OR 1=1 --",
    "%0d%0aSet-Cookie:x=1",
    "../../etc/passwd",
    "ｅｘａｍｐｌｅ＠ｅｘａｍｐｌｅ．ｏｒｇ",
    "δοκιμή@παράδειγμα.δοκιμή",
    "\u202eevil\u202c@example.org",
    "😀" * 40,
    "x" * 5000,
    "a" * 64 + "@" + "b" * 250 + ".org",
]


def snapshot() -> dict:
    """Every row a public request could touch, and the mail sent so far."""
    state = {model._meta.label: list(model.objects.order_by("pk").values()) for model in WATCHED}
    state["mail"] = [(m.to, m.subject) for m in mail.outbox]
    return state


def changed(before: dict, after: dict) -> list[str]:
    return [name for name in before if before[name] != after[name]]


def changed_rows(before: dict, after: dict, label: str) -> set[int]:
    """Primary keys of the rows of one table that were added, removed or changed."""
    old = {row["id"]: row for row in before[label]}
    new = {row["id"]: row for row in after[label]}
    return {pk for pk in old.keys() | new.keys() if old.get(pk) != new.get(pk)}


# Any valid 32-character secret: the cookie and the X-CSRFToken header carry it,
# as a browser's form page would.
CSRF_SECRET = "fuzzfuzzfuzzfuzzfuzzfuzzfuzz0123"


@pytest.fixture
def csrf_client() -> Client:
    """A client that enforces CSRF like the real site (Django's default test client skips it)."""
    client = Client(enforce_csrf_checks=True)
    client.cookies["csrftoken"] = CSRF_SECRET
    return client


@pytest.fixture
def rolled_back():
    """Run a block in a savepoint that is always rolled back, so each generated
    example starts from the same rows."""

    class Savepoint:
        def __enter__(self):
            self.sid = transaction.savepoint()
            self.outbox = len(mail.outbox)

        def __exit__(self, *exc):
            transaction.savepoint_rollback(self.sid)
            del mail.outbox[self.outbox :]
            return False

    return Savepoint
