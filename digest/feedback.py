"""Signed 👍/👎 links, one per subscriber and paper.

A digest of 8 papers carries 8 of these per reader, so signing must be cheap:
the HMAC key is derived from SECRET_KEY once (as django.core.signing's
salted_hmac would do on every call), and each token costs one HMAC-SHA256.
The token carries the subscriber, the paper and the subscriber's
token_version, so bumping the version revokes old links like every other link.
"""

import base64
import hashlib
import hmac
from dataclasses import dataclass
from functools import lru_cache

from django.conf import settings

_SALT = b"paperboy.digest.feedback"
_SIG_BYTES = 12
_MAX_LENGTH = 80


class InvalidFeedbackToken(Exception):
    pass


@dataclass(frozen=True)
class FeedbackTarget:
    subscriber_id: int
    paper_id: int
    token_version: int


@lru_cache(maxsize=4)
def _key(secret: str) -> bytes:
    return hashlib.sha256(_SALT + secret.encode()).digest()


def _sign(body: str) -> str:
    digest = hmac.new(_key(settings.SECRET_KEY), body.encode(), hashlib.sha256).digest()[:_SIG_BYTES]
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def make_feedback_token(subscriber_id: int, paper_id: int, token_version: int) -> str:
    body = f"{subscriber_id:x}.{paper_id:x}.{token_version:x}"
    return f"{body}.{_sign(body)}"


def read_feedback_token(token: str) -> FeedbackTarget:
    if not isinstance(token, str) or not token or len(token) > _MAX_LENGTH:
        raise InvalidFeedbackToken("missing or over-long token")
    if not token.isascii():  # hmac.compare_digest refuses non-ASCII str
        raise InvalidFeedbackToken("malformed token")
    # "." never occurs in URL-safe base64, so it cleanly separates the fields.
    parts = token.split(".")
    if len(parts) != 4:
        raise InvalidFeedbackToken("malformed token")
    body = ".".join(parts[:3])
    if not hmac.compare_digest(_sign(body), parts[3]):
        raise InvalidFeedbackToken("bad signature")
    try:
        subscriber_id, paper_id, version = (int(part, 16) for part in parts[:3])
    except ValueError as exc:
        raise InvalidFeedbackToken("malformed token") from exc
    return FeedbackTarget(subscriber_id=subscriber_id, paper_id=paper_id, token_version=version)
