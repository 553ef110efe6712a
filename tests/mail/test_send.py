"""How ESP answers are classified and retried, and asking the ESP about a message."""

import pytest
import requests
from anymail.exceptions import AnymailRequestsAPIError
from celery.exceptions import SoftTimeLimitExceeded

from mail.ratelimit import LocalRateLimiter
from mail.send import (
    AcceptedUnread,
    LookupUnavailable,
    PermanentSendError,
    TransientSendError,
    UncertainSendError,
    classify,
    find_sent,
    send_one,
)


def api_error(status: int | None, *, cause: Exception | None = None, headers: dict | None = None):
    response = None
    if status is not None:
        response = requests.Response()
        response.status_code = status
        response.headers.update(headers or {})
        response._content = b"<html>not json</html>"
    error = AnymailRequestsAPIError("ESP said something", response=response)
    error.__cause__ = cause
    return error


def test_a_2xx_we_cannot_read_means_accepted_not_failed():
    assert isinstance(classify(api_error(200)), AcceptedUnread)
    assert isinstance(classify(api_error(202)), AcceptedUnread)


def test_the_soft_time_limit_is_never_a_send_error():
    with pytest.raises(SoftTimeLimitExceeded):
        classify(SoftTimeLimitExceeded())


def test_a_read_timeout_is_uncertain_and_a_connect_timeout_is_not():
    read = classify(api_error(None, cause=requests.exceptions.ReadTimeout("read timed out")))
    assert isinstance(read, UncertainSendError)
    connect = classify(api_error(None, cause=requests.exceptions.ConnectTimeout("connect timed out")))
    assert isinstance(connect, TransientSendError) and not isinstance(connect, UncertainSendError)


def test_429_is_rate_limited_with_its_retry_after_and_4xx_is_permanent():
    error = classify(api_error(429, headers={"Retry-After": "7"}))
    assert isinstance(error, TransientSendError) and error.rate_limited and error.retry_after == 7
    assert isinstance(classify(api_error(503)), TransientSendError)
    assert isinstance(classify(api_error(422)), PermanentSendError)


class ScriptedConnection:
    """Raises the scripted errors in turn, then accepts."""

    def __init__(self, *errors: Exception):
        self.errors = list(errors)
        self.calls = 0

    def send_messages(self, messages):
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return 1


class Message:
    to = ["reader@example.org"]
    extra_headers = {"Message-ID": "<digest.1@example.org>"}
    anymail_status = None


def test_429s_pause_the_shared_limiter_and_never_use_up_the_attempts(settings):
    settings.DIGEST_SEND_ATTEMPTS = 2
    clock = [0.0]
    limiter = LocalRateLimiter(0, clock=lambda: clock[0])
    slept = []

    def sleep(seconds):
        slept.append(seconds)
        clock[0] += seconds

    connection = ScriptedConnection(*[api_error(429, headers={"Retry-After": "2"}) for _ in range(6)])
    accepted = send_one(connection, Message(), limiter=limiter, sleep=sleep)
    assert connection.calls == 7  # six 429s, more than the two attempts, then accepted
    assert accepted.message_id == "<digest.1@example.org>"
    assert slept == [2.0] * 6  # each one waited out the pause every sender shares


def test_a_429_stops_without_an_attempt_when_the_task_must_end(settings):
    connection = ScriptedConnection(api_error(429, headers={"Retry-After": "1"}))
    with pytest.raises(TransientSendError) as caught:
        send_one(connection, Message(), limiter=LocalRateLimiter(0), should_stop=lambda: True)
    assert caught.value.rate_limited


def test_other_transient_errors_use_up_the_attempts(settings):
    settings.DIGEST_SEND_ATTEMPTS = 2
    connection = ScriptedConnection(api_error(500), api_error(500), api_error(500))
    with pytest.raises(TransientSendError):
        send_one(connection, Message(), sleep=lambda s: None)
    assert connection.calls == 2


def test_an_unreadable_accept_gives_an_empty_id():
    assert send_one(ScriptedConnection(api_error(200)), Message()).message_id == ""


def test_find_sent_asks_postmark_by_delivery_id(settings, postmark_at_fake_esp):
    from django.core.mail import get_connection

    esp, connection = postmark_at_fake_esp
    with esp.state.lock:
        esp.state.remember("pm-123", {"delivery_id": "42"})
    assert find_sent(connection, 42) == "pm-123"
    assert find_sent(connection, 43) is None
    assert esp.stats()["searches"] == 2
    settings.EMAIL_BACKEND = "anymail.backends.sendgrid.EmailBackend"
    settings.ANYMAIL = {"SENDGRID_API_KEY": "k"}
    with pytest.raises(LookupUnavailable):
        find_sent(get_connection(), 42)
