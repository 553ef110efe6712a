import base64
import uuid

import pytest
from django.test import Client

from subscribers.models import Subscriber
from tests.subscribers.factories import SubscriberFactory


@pytest.fixture(autouse=True)
def no_signup_limit(settings):
    """Signups are not rate limited unless a test asks for it."""
    settings.SIGNUP_RATE_LIMIT = ""
    settings.SITE_URL = "https://paperboy.example.org"


@pytest.fixture
def commit(django_capture_on_commit_callbacks):
    """Run on_commit callbacks (queued emails) as if the request's transaction committed."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


@pytest.fixture
def active(db) -> Subscriber:
    return SubscriberFactory(status=Subscriber.Status.ACTIVE, topics=["reasoning", "efficiency"])


@pytest.fixture
def pending(db) -> Subscriber:
    return SubscriberFactory(status=Subscriber.Status.PENDING, topics=["agents"])


@pytest.fixture
def csrf_client() -> Client:
    """A client that enforces CSRF and has no cookies, like a mail provider's server."""
    return Client(enforce_csrf_checks=True)


@pytest.fixture
def unique_ip() -> str:
    """An address of its own, so rate-limit counters never leak between tests."""
    a, b, c = uuid.uuid4().bytes[:3]
    return f"10.{a}.{b}.{c}"


def basic_auth(credentials: str) -> str:
    return "Basic " + base64.b64encode(credentials.encode()).decode()
