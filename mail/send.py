"""Hand one message to the configured backend, retrying what is worth retrying.

Errors fall in two kinds:

* transient: HTTP 429 (Retry-After is honoured), 5xx, timeouts and connection
  errors. Retried here a few times with exponential backoff; if the ESP is
  still unwell, `TransientSendError` tells the chunk to stop and try later.
* permanent: anything else the ESP refuses (an invalid or inactive recipient,
  a rejected payload). The delivery is marked failed with the ESP's reason.
"""

import logging
import os
import smtplib
import time
from collections.abc import Callable
from dataclasses import dataclass

from anymail.exceptions import AnymailError, AnymailRecipientsRefused, AnymailRequestsAPIError
from django.conf import settings

logger = logging.getLogger(__name__)

MAX_WAIT_SECONDS = 60


class PermanentSendError(Exception):
    pass


class TransientSendError(Exception):
    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


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
    """Turn a backend's exception into TransientSendError or PermanentSendError."""
    if isinstance(exc, AnymailRecipientsRefused):
        return PermanentSendError(f"recipient refused: {exc}")
    if isinstance(exc, AnymailRequestsAPIError):
        status = exc.status_code
        if status is None:
            return TransientSendError(f"ESP unreachable: {_short(exc)}")
        if status == 429:
            return TransientSendError("ESP rate limit (429)", retry_after=_retry_after(exc))
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


def _short(exc: Exception) -> str:
    return " ".join(str(exc).split())[:300]


def send_one(
    connection,
    message,
    *,
    attempts: int | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Accepted:
    """Send one message over an open connection; return the ESP's message id."""
    send_with_retries(connection, message, attempts=attempts, sleep=sleep)
    return Accepted(message_id=_message_id(message))


def send_with_retries(
    connection,
    message,
    *,
    attempts: int | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Hand a message (to one reader, or a batch to many) to the backend,
    retrying transient errors; raises TransientSendError or PermanentSendError."""
    attempts = attempts or settings.DIGEST_SEND_ATTEMPTS
    for attempt in range(1, attempts + 1):
        try:
            connection.send_messages([message])
        except Exception as exc:
            error = classify(exc)
            if isinstance(error, PermanentSendError) or attempt == attempts:
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
            continue
        return
    raise AssertionError("unreachable")


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
