"""Signed 👍/👎 links, one per subscriber and paper.

Signed by ``subscribers.tokens`` like every other link (its own salt), so
they follow the same key rotation: a link signed with a key now listed in
``SECRET_KEY_FALLBACKS`` still works. The token carries the subscriber, the
paper and the subscriber's token_version, so bumping the version revokes old
links like every other link.

Links in digests sent before the switch used a hand-made HMAC
(``<hex>.<hex>.<hex>.<sig>``); they are still read, against the current key
and the fallbacks, until they age out of inboxes.
"""

import base64
import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings

from subscribers.tokens import InvalidToken, read_numbers, sign_many, sign_numbers

_SALT = "digest.feedback"
# The legacy HMAC tokens separate their fields with "."; current ones have one "." at most.
_SEP = "."
_MAX_LENGTH = 120

_LEGACY_SALT = b"paperboy.digest.feedback"
_LEGACY_SIG_BYTES = 12


class InvalidFeedbackToken(Exception):
    pass


@dataclass(frozen=True)
class FeedbackTarget:
    subscriber_id: int
    paper_id: int
    token_version: int


def make_feedback_token(subscriber_id: int, paper_id: int, token_version: int) -> str:
    return sign_numbers(_SALT, subscriber_id, paper_id, token_version)


def make_feedback_tokens(subscriber_id: int, paper_ids: Iterable[int], token_version: int) -> list[str]:
    """``make_feedback_token`` for each of a digest's papers, in their order."""
    return sign_many(_SALT, subscriber_id, ((paper_id, token_version) for paper_id in paper_ids))


def read_feedback_token(token: str) -> FeedbackTarget:
    if not isinstance(token, str) or not token or len(token) > _MAX_LENGTH:
        raise InvalidFeedbackToken("missing or over-long token")
    if not token.isascii():  # hmac.compare_digest refuses non-ASCII str
        raise InvalidFeedbackToken("malformed token")
    if token.count(_SEP) == 3:
        return _read_legacy(token)
    try:
        subscriber_id, paper_id, version = read_numbers(_SALT, token, count=3)
    except InvalidToken as exc:
        raise InvalidFeedbackToken(str(exc)) from exc
    return FeedbackTarget(subscriber_id=subscriber_id, paper_id=paper_id, token_version=version)


def _legacy_signature(secret: str, body: str) -> str:
    key = hashlib.sha256(_LEGACY_SALT + secret.encode()).digest()
    digest = hmac.new(key, body.encode(), hashlib.sha256).digest()[:_LEGACY_SIG_BYTES]
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def _read_legacy(token: str) -> FeedbackTarget:
    """A link from a digest sent before feedback links used django.core.signing."""
    *fields, signature = token.split(_SEP)
    body = _SEP.join(fields)
    secrets = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
    if not any(hmac.compare_digest(_legacy_signature(secret, body), signature) for secret in secrets):
        raise InvalidFeedbackToken("bad signature")
    try:
        subscriber_id, paper_id, version = (int(field, 16) for field in fields)
    except ValueError as exc:
        raise InvalidFeedbackToken("malformed token") from exc
    return FeedbackTarget(subscriber_id=subscriber_id, paper_id=paper_id, token_version=version)
