"""Signed 👍/👎 links, one per subscriber and paper.

Signed with ``django.core.signing`` like every other link (its own salt), so
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
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.core import signing
from django.utils.encoding import force_bytes, force_str

from subscribers.tokens import InvalidToken, b62_decode, b62_encode

_SALT = "digest.feedback"
# "." never occurs in URL-safe base64 or in the base62 fields, so it cleanly
# separates the value from the signature; "-" separates the fields.
_SEP = "."
_FIELD_SEP = "-"
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


def _signer() -> signing.Signer:
    # A digest signs one link per paper per reader, so the signer is built once per key set.
    return _signer_for(settings.SECRET_KEY, tuple(settings.SECRET_KEY_FALLBACKS))


@lru_cache(maxsize=4)
def _signer_for(key: str, fallbacks: tuple[str, ...]) -> signing.Signer:
    return KeyedSigner(key=key, fallback_keys=list(fallbacks), salt=_SALT, sep=_SEP)


class KeyedSigner(signing.Signer):
    """``django.core.signing.Signer`` that derives each key's HMAC key once
    instead of on every signature. Signatures are byte for byte the same."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if self.algorithm != "sha256":
            raise ValueError("KeyedSigner signs with sha256, as Django's Signer does by default")
        self._macs: dict[str, hmac.HMAC] = {}

    def signature(self, value: str | bytes, key: str | bytes | None = None) -> str:
        key = key or self.key
        base = self._macs.get(force_str(key))
        if base is None:
            derived = hashlib.sha256(force_bytes(self.salt) + b"signer" + force_bytes(key)).digest()
            base = self._macs[force_str(key)] = hmac.new(derived, digestmod=hashlib.sha256)
        mac = base.copy()
        mac.update(force_bytes(value))
        return signing.b64_encode(mac.digest()).decode()


def make_feedback_token(subscriber_id: int, paper_id: int, token_version: int) -> str:
    value = _FIELD_SEP.join(b62_encode(int(number)) for number in (subscriber_id, paper_id, token_version))
    return _signer().sign(value)


def read_feedback_token(token: str) -> FeedbackTarget:
    if not isinstance(token, str) or not token or len(token) > _MAX_LENGTH:
        raise InvalidFeedbackToken("missing or over-long token")
    if not token.isascii():  # hmac.compare_digest refuses non-ASCII str
        raise InvalidFeedbackToken("malformed token")
    if token.count(_SEP) == 3:
        return _read_legacy(token)
    try:
        value = _signer().unsign(token)
    except signing.BadSignature as exc:
        raise InvalidFeedbackToken("bad signature") from exc
    parts = value.split(_FIELD_SEP)
    if len(parts) != 3:
        raise InvalidFeedbackToken("malformed token")
    try:
        subscriber_id, paper_id, version = (b62_decode(part) for part in parts)
    except InvalidToken as exc:
        raise InvalidFeedbackToken("malformed token") from exc
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
