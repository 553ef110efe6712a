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
            logger.info("transient send error to %s (%s); retrying in %.1fs", message.to, error, wait)
            sleep(min(wait, MAX_WAIT_SECONDS))
            continue
        return Accepted(message_id=_message_id(message))
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
