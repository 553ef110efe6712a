"""Hand one message to the configured backend, retrying what is worth retrying.

Errors fall in three kinds:

* transient: HTTP 429, 5xx, timeouts before the request went out, and
  connection errors. A 429 pauses every worker through the shared rate
  limiter (mail/ratelimit.py) for the ESP's Retry-After and is tried again
  without counting as an attempt; the others are retried here a few times with
  exponential backoff, and then `TransientSendError` tells the chunk to stop
  and try later.
* uncertain: the request went out and no answer came back (a read timeout):
  the ESP may have the message. `UncertainSendError`; the caller asks the ESP
  (`find_sent`) before it sends again.
* permanent: anything else the ESP refuses (an invalid or inactive recipient,
  a rejected payload). The delivery is marked failed with the ESP's reason.

A 2xx answer whose body cannot be read means the ESP took the message and we
do not know its id: that is a success, never a failure.

Celery's SoftTimeLimitExceeded is never a send error: it passes through.
"""

import logging
import os
import smtplib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypedDict, Unpack

import requests
from anymail.exceptions import AnymailError, AnymailRecipientsRefused, AnymailRequestsAPIError
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings

from config.logging import log_context
from digest.metrics import esp_calls_record
from mail.ratelimit import RateLimiter, wait_for_turn

logger = logging.getLogger(__name__)

MAX_WAIT_SECONDS = 60


class PermanentSendError(Exception):
    pass


class TransientSendError(Exception):
    def __init__(self, message: str, retry_after: float | None = None, *, rate_limited: bool = False):
        super().__init__(message)
        self.retry_after = retry_after
        # Stopped while the ESP was still answering 429: no attempt is counted.
        self.rate_limited = rate_limited


class UncertainSendError(TransientSendError):
    """The request reached the ESP and its answer never came: it may have the message."""


class AcceptedUnread(Exception):
    """A 2xx answer we cannot read: the ESP took the message, its id is unknown."""


@dataclass(frozen=True)
class Accepted:
    message_id: str


def settle_environment(connection) -> None:
    """Read proxy and CA settings from the environment once for an open connection.

    requests looks them up again on every call (scanning the whole environment
    for *_proxy variables), which costs more than building the message. For a
    backend that keeps a requests session, resolve them now for its API URL and
    stop the per-call lookup; other backends are left alone.
    """
    import requests

    session = getattr(connection, "session", None)
    api_url = getattr(connection, "api_url", None)
    if not isinstance(session, requests.Session) or not api_url or not session.trust_env:
        return
    session.proxies.update(requests.utils.get_environ_proxies(api_url))
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle and session.verify is True:
        session.verify = bundle
    session.trust_env = False


def _retry_after(exc: AnymailRequestsAPIError) -> float | None:
    response = getattr(exc, "response", None)
    value = response.headers.get("Retry-After") if response is not None else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def classify(exc: Exception) -> Exception:
    """Turn a backend's exception into TransientSendError, UncertainSendError,
    PermanentSendError, or AcceptedUnread for a 2xx answer we cannot read."""
    if isinstance(exc, SoftTimeLimitExceeded):
        raise exc
    if isinstance(exc, AnymailRecipientsRefused):
        return PermanentSendError(f"recipient refused: {exc}")
    if isinstance(exc, AnymailRequestsAPIError):
        status = exc.status_code
        if status is not None and 200 <= status < 300:
            return AcceptedUnread(f"ESP accepted ({status}) with an unreadable answer: {_short(exc)}")
        if status is None:
            if _sent_without_answer(exc):
                return UncertainSendError(f"no answer from the ESP: {_short(exc)}")
            return TransientSendError(f"ESP unreachable: {_short(exc)}")
        if status == 429:
            return TransientSendError(
                "ESP rate limit (429)", retry_after=_retry_after(exc), rate_limited=True
            )
        if status >= 500:
            return TransientSendError(f"ESP error {status}: {_short(exc)}")
        return PermanentSendError(f"ESP refused the message ({status}): {_short(exc)}")
    if isinstance(exc, AnymailError):
        return PermanentSendError(f"{exc.__class__.__name__}: {_short(exc)}")
    if isinstance(exc, smtplib.SMTPRecipientsRefused | smtplib.SMTPSenderRefused | smtplib.SMTPDataError):
        return PermanentSendError(f"SMTP refused: {_short(exc)}")
    if isinstance(exc, smtplib.SMTPException | OSError):
        return TransientSendError(f"SMTP unavailable: {_short(exc)}")
    return PermanentSendError(f"{exc.__class__.__name__}: {_short(exc)}")


def _sent_without_answer(exc: Exception) -> bool:
    """Whether the request went out before the failure (a read timeout or a
    connection dropped while waiting), rather than never reaching the ESP."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, requests.exceptions.ConnectTimeout):
            return False
        if isinstance(cause, requests.exceptions.ReadTimeout | requests.exceptions.ChunkedEncodingError):
            return True
        if isinstance(cause, requests.exceptions.ConnectionError):
            text = str(cause)
            return "RemoteDisconnected" in text or "Connection aborted" in text
        cause = cause.__cause__ or cause.__context__
    return False


def _short(exc: Exception) -> str:
    return " ".join(str(exc).split())[:300]


class SendOptions(TypedDict, total=False):
    """What `send_with_retries` takes besides the connection and the message."""

    attempts: int | None
    sleep: Callable[[float], None]
    limiter: RateLimiter | None
    should_stop: Callable[[], bool]


def send_one(connection, message, **options: Unpack[SendOptions]) -> Accepted:
    """Send one message over an open connection; return the ESP's message id
    ("" when the ESP took it but its answer could not be read)."""
    if not send_with_retries(connection, message, **options):
        return Accepted(message_id="")
    return Accepted(message_id=_message_id(message))


def send_with_retries(
    connection,
    message,
    *,
    attempts: int | None = None,
    sleep: Callable[[float], None] = time.sleep,
    limiter: RateLimiter | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> bool:
    """`_send_counted`, with the ESP calls it made counted for /metrics and the
    delivery's id in every log line it writes."""
    calls = {"ok": 0, "errors": 0}
    try:
        with log_context(delivery_id=_delivery_id(message)):
            return _send_counted(
                connection,
                message,
                calls=calls,
                attempts=attempts,
                sleep=sleep,
                limiter=limiter,
                should_stop=should_stop,
            )
    finally:
        esp_calls_record(**calls)


def _delivery_id(message: object) -> str | None:
    """The delivery a single-reader message carries in its metadata (batches carry none)."""
    metadata = getattr(message, "metadata", None)  # anymail's default is a sentinel, not a dict
    return metadata.get("delivery_id") if isinstance(metadata, dict) else None


def _send_counted(
    connection,
    message,
    *,
    calls: dict[str, int],
    attempts: int | None,
    sleep: Callable[[float], None],
    limiter: RateLimiter | None,
    should_stop: Callable[[], bool],
) -> bool:
    """Hand a message (to one reader, or a batch to many) to the backend.

    Waits for its turn in the shared rate limit first (a batch costs one turn
    per recipient). A 429 pauses the limiter for every worker and is tried
    again after the pause, without counting as an attempt, until `should_stop`
    says the task must end; other transient errors are retried `attempts`
    times with backoff. Returns True when the ESP's answer was read, False when
    it accepted the message with an answer we could not read. Raises
    TransientSendError, UncertainSendError or PermanentSendError."""
    attempts = attempts or settings.DIGEST_SEND_ATTEMPTS
    cost = max(1, len(message.to))
    attempt = 1
    while True:
        if limiter is not None:
            wait_for_turn(limiter, cost, sleep=sleep)
        try:
            connection.send_messages([message])
        except Exception as exc:
            error = classify(exc)
            if isinstance(error, AcceptedUnread):
                calls["ok"] += 1
                logger.warning("%s (to %s)", error, _recipients(message))
                return False
            calls["errors"] += 1
            if isinstance(error, PermanentSendError | UncertainSendError):
                raise error from exc
            assert isinstance(error, TransientSendError)
            if error.rate_limited:
                wait = error.retry_after if error.retry_after is not None else settings.DIGEST_SEND_BACKOFF
                wait = min(wait, MAX_WAIT_SECONDS)
                if should_stop():
                    raise TransientSendError(str(error), error.retry_after, rate_limited=True) from exc
                logger.info("ESP rate limit (429); every sender pauses %.1fs", wait)
                if limiter is not None:
                    limiter.pause(wait)
                else:
                    sleep(wait)
                continue
            if attempt >= attempts or should_stop():
                raise error from exc
            wait = (
                error.retry_after
                if error.retry_after is not None
                else settings.DIGEST_SEND_BACKOFF * 2 ** (attempt - 1)
            )
            logger.info(
                "transient send error to %s (%s); retrying in %.1fs", _recipients(message), error, wait
            )
            sleep(min(wait, MAX_WAIT_SECONDS))
            attempt += 1
            continue
        calls["ok"] += 1
        return True


# --- Asking the ESP whether it has a message ---------------------------------------------


class LookupUnavailable(Exception):
    """The ESP cannot tell us (no search API, or the search failed)."""


def find_sent(connection, delivery_id: int) -> str | None:
    """The ESP's message id of the message carrying this delivery id in its
    metadata, None when the ESP has no such message, LookupUnavailable when it
    cannot say.

    Postmark keeps every message it accepted for its retention period, and its
    outbound message search filters by metadata
    (GET /messages/outbound?metadata_delivery_id=...). Other ESPs' backends
    raise LookupUnavailable."""
    token = getattr(connection, "server_token", None)
    api_url = getattr(connection, "api_url", None)
    session = getattr(connection, "session", None)
    if connection.__class__.__module__ != "anymail.backends.postmark" or not (token and api_url):
        raise LookupUnavailable("this ESP offers no message search")
    try:
        response = (session or requests).get(
            f"{api_url}messages/outbound",
            params={"count": 1, "offset": 0, "metadata_delivery_id": str(delivery_id)},
            headers={"Accept": "application/json", "X-Postmark-Server-Token": token},
            timeout=getattr(connection, "timeout", None) or settings.EMAIL_TIMEOUT,
        )
        response.raise_for_status()
        found = response.json()
        messages = found.get("Messages") or []
    except (requests.RequestException, ValueError, AttributeError) as exc:
        raise LookupUnavailable(f"message search failed: {_short(exc)}") from exc
    if not messages:
        return None
    return str(messages[0].get("MessageID") or "")


def _message_id(message) -> str:
    status = getattr(message, "anymail_status", None)
    if status is not None and status.status:
        if status.status & {"rejected", "invalid", "failed"}:
            raise PermanentSendError(f"ESP rejected the recipient ({', '.join(sorted(status.status))})")
        if status.message_id:
            return str(status.message_id)
    # Backends without an ESP (outbox, SMTP) keep the Message-ID we set.
    return message.extra_headers.get("Message-ID", "")


def _recipients(message) -> str:
    to = list(message.to)
    return ", ".join(to) if len(to) <= 3 else f"{to[0]} and {len(to) - 1} others"


# --- Batches: one API call, one individual message per recipient ------------------------

# A failed recipient's status, as anymail reports it.
REFUSED_STATUSES = frozenset({"rejected", "invalid", "failed"})


@dataclass(frozen=True)
class BatchOutcome:
    accepted: dict[str, str]  # address -> the ESP's message id for that recipient
    refused: dict[str, str]  # address -> why the ESP refused it


def batch_outcome(message) -> BatchOutcome:
    """Per-recipient results of an accepted batch, from message.anymail_status."""
    accepted: dict[str, str] = {}
    refused: dict[str, str] = {}
    status = getattr(message, "anymail_status", None)
    by_recipient = dict(status.recipients) if status is not None else {}
    for address in message.to:
        recipient = by_recipient.get(address)
        if recipient is None:
            # anymail keys recipients by their bare address, as we pass them.
            recipient = next((r for a, r in by_recipient.items() if a.lower() == address.lower()), None)
        if recipient is None:
            refused[address] = "the ESP reported nothing for this recipient"
        elif recipient.status in REFUSED_STATUSES:
            refused[address] = f"ESP rejected the recipient ({recipient.status})"
        else:
            accepted[address] = str(recipient.message_id or "")
    return BatchOutcome(accepted=accepted, refused=refused)


def refused_in_request(error: PermanentSendError, recipients: list[str]) -> dict[str, str]:
    """Recipients a permanent refusal names, when the ESP refused the whole call
    because of some of its recipients (SendGrid answers 400 with one error per
    bad address, each pointing at `personalizations.N.to.0.email`).

    Empty when the error is about the message itself, not about recipients."""
    cause = error.__cause__
    response = getattr(cause, "response", None)
    if response is None:
        return {}
    try:
        errors = response.json().get("errors") or []
    except (ValueError, AttributeError):
        return {}
    refused: dict[str, str] = {}
    for item in errors:
        field_path = str((item or {}).get("field") or "")
        parts = field_path.split(".")
        if len(parts) < 2 or parts[0] != "personalizations" or not parts[1].isdigit():
            return {}  # something other than a recipient is wrong: fail the whole batch
        index = int(parts[1])
        if index >= len(recipients):
            return {}
        refused[recipients[index]] = f"recipient refused: {item.get('message') or 'invalid recipient'}"
    return refused
