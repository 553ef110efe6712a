"""Signed tokens for every personal link: the ones in each email and the reader's own web pages.

All tokens are ``django.core.signing`` signatures with one salt per purpose, so a
token made for one link never opens another. They carry numbers only, in base62:
the id the link points at (a subscriber, or for the digest's links a delivery)
and the subscriber's ``token_version``; bumping the version revokes every link
ever sent to that person.

* confirm: expires after ``CONFIRM_MAX_AGE`` (7 days).
* manage and unsubscribe: never expire, because they sit in old emails and must
  keep working (RFC 8058 expects the unsubscribe link to work for a long time).
* data (download or delete everything): expires after ``DATA_MAX_AGE`` (1 hour)
  and is only ever mailed on request, so an old email, a forwarded digest or a
  mail archive never holds a link that exports or erases the reader's data.

``sign_numbers`` and ``read_numbers`` are the one signer behind these and the
digest's links (view in browser, feed, 👍/👎); ``sign_many`` signs one reader's
many 👍/👎 links at once, to the same tokens. The manage and unsubscribe helpers
take plain ints, so the digest can sign them straight from ``values_list`` rows
without loading model instances.
"""

import binascii
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core import signing
from django.utils.encoding import force_bytes, force_str

if TYPE_CHECKING:
    from subscribers.models import Subscriber

CONFIRM_MAX_AGE = timedelta(days=7)
DATA_MAX_AGE = timedelta(hours=1)

_CONFIRM_SALT = "subscribers.confirm"
_MANAGE_SALT = "subscribers.manage"
_UNSUBSCRIBE_SALT = "subscribers.unsubscribe"
_DATA_SALT = "subscribers.data"
# "." never occurs in a URL-safe base64 signature, so it is a safe separator and
# keeps tokens free of characters that need escaping in URLs; "-" never occurs in base62.
_SEP = "."
_FIELD_SEP = "-"
_DIGITS = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
# 62**12 is far beyond any id; a longer field is not ours.
_MAX_DIGITS = 12
_MAX_TOKEN_LENGTH = 200


class InvalidToken(Exception):
    """The token is tampered, truncated, expired, revoked or made for another purpose."""


@dataclass(frozen=True)
class TokenPayload:
    subscriber_id: int
    token_version: int


def _encode(number: int) -> str:
    if number < 0:
        raise ValueError("only non-negative numbers can be signed")
    return signing.b62_encode(number)


def _decode(text: str) -> int:
    if not text or len(text) > _MAX_DIGITS or not _DIGITS.issuperset(text):
        raise InvalidToken("malformed token")
    return signing.b62_decode(text)


class KeyedSigner(signing.Signer):
    """``django.core.signing.Signer`` that derives each key's HMAC key once
    instead of on every signature; signatures are byte for byte the same. A
    digest signs a dozen links per reader, so this is a hot path."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if self.algorithm != "sha256":
            raise ValueError("KeyedSigner signs with sha256, as Django's Signer does by default")
        self._macs: dict[str, _Mac] = {}

    def _mac(self, key: str | bytes) -> "_Mac":
        name = force_str(key)
        base = self._macs.get(name)
        if base is None:
            derived = hashlib.sha256(force_bytes(self.salt) + b"signer" + force_bytes(key)).digest()
            base = self._macs[name] = _Mac(derived)
        return base

    def signature(self, value: str | bytes, key: str | bytes | None = None) -> str:
        return _signed(self._mac(key or self.key), value.encode() if isinstance(value, str) else value)

    def sign_all(self, values: Iterable[str]) -> list[str]:
        """``sign`` for each value, with the current key."""
        base = self._mac(self.key)
        return [f"{value}{self.sep}{_signed(base, value.encode())}" for value in values]

    def sign(self, value: str) -> str:
        return f"{value}{self.sep}{self.signature(value)}"


_SHA256_BLOCK = 64
_URLSAFE = bytes.maketrans(b"+/", b"-_")


class _Mac:
    """HMAC-SHA256 (RFC 2104) under one key, with the key's inner and outer
    hash states computed once: a signature then costs two hash copies, which
    is cheaper than copying an ``hmac.HMAC`` object. Same bytes as ``hmac``."""

    __slots__ = ("inner", "outer")

    def __init__(self, key: bytes) -> None:
        if len(key) > _SHA256_BLOCK:
            key = hashlib.sha256(key).digest()
        key = key.ljust(_SHA256_BLOCK, b"\0")
        self.inner = hashlib.sha256(bytes(byte ^ 0x36 for byte in key))
        self.outer = hashlib.sha256(bytes(byte ^ 0x5C for byte in key))

    def digest(self, value: bytes) -> bytes:
        inner = self.inner.copy()
        inner.update(value)
        outer = self.outer.copy()
        outer.update(inner.digest())
        return outer.digest()


def _signed(base: _Mac, value: bytes) -> str:
    """The URL-safe base64 HMAC of `value`, without padding (as Django's signer writes it)."""
    return binascii.b2a_base64(base.digest(value), newline=False).translate(_URLSAFE).rstrip(b"=").decode()


def _untimed_signer(salt: str) -> KeyedSigner:
    return _keyed_signer(salt, settings.SECRET_KEY, tuple(settings.SECRET_KEY_FALLBACKS))


@lru_cache(maxsize=32)
def _keyed_signer(salt: str, key: str, fallbacks: tuple[str, ...]) -> KeyedSigner:
    return KeyedSigner(key=key, fallback_keys=list(fallbacks), salt=salt, sep=_SEP)


@lru_cache(maxsize=4096)
def _b62(number: int) -> str:
    """Base62 of a small number (paper ids and token versions recur on every reader)."""
    return _encode(number)


def sign_numbers(salt: str, *numbers: int, timed: bool = False) -> str:
    """A URL-safe signed token carrying ``numbers``; ``timed`` adds the signing time for ``max_age``."""
    signer = signing.TimestampSigner(salt=salt, sep=_SEP) if timed else _untimed_signer(salt)
    return signer.sign(_FIELD_SEP.join(_encode(int(number)) for number in numbers))


def sign_many(salt: str, first: int, rest: Iterable[tuple[int, ...]]) -> list[str]:
    """``sign_numbers(salt, first, *numbers)`` for each tuple in ``rest``: one
    reader's links to many papers, with the reader's own field encoded once."""
    head = _encode(int(first)) + _FIELD_SEP
    return _untimed_signer(salt).sign_all(head + _FIELD_SEP.join(map(_b62, numbers)) for numbers in rest)


def read_numbers(salt: str, token: str, *, count: int, max_age: timedelta | None = None) -> tuple[int, ...]:
    """The ``count`` numbers a token from ``sign_numbers`` carries.

    ``max_age`` reads a ``timed`` token and refuses it once that old. Raises
    InvalidToken for anything else: another salt, a bad signature, an expired
    or malformed token."""
    if not isinstance(token, str) or not token or len(token) > _MAX_TOKEN_LENGTH:
        raise InvalidToken("missing or over-long token")
    try:
        if max_age is None:
            value = _untimed_signer(salt).unsign(token)
        else:
            value = signing.TimestampSigner(salt=salt, sep=_SEP).unsign(token, max_age=max_age)
    except signing.SignatureExpired as exc:
        raise InvalidToken("expired") from exc
    except signing.BadSignature as exc:
        raise InvalidToken("bad signature") from exc
    fields = value.split(_FIELD_SEP)
    if len(fields) != count:
        raise InvalidToken("malformed token")
    return tuple(_decode(field) for field in fields)


def _read_subscriber(salt: str, token: str, *, max_age: timedelta | None = None) -> TokenPayload:
    subscriber_id, token_version = read_numbers(salt, token, count=2, max_age=max_age)
    return TokenPayload(subscriber_id=subscriber_id, token_version=token_version)


def make_confirm_token(subscriber: "Subscriber") -> str:
    return sign_numbers(_CONFIRM_SALT, subscriber.pk, subscriber.token_version, timed=True)


def read_confirm_token(token: str) -> TokenPayload:
    return _read_subscriber(_CONFIRM_SALT, token, max_age=CONFIRM_MAX_AGE)


def make_manage_token(subscriber_id: int, token_version: int) -> str:
    return sign_numbers(_MANAGE_SALT, subscriber_id, token_version)


def read_manage_token(token: str) -> TokenPayload:
    return _read_subscriber(_MANAGE_SALT, token)


def make_unsubscribe_token(subscriber_id: int, token_version: int) -> str:
    return sign_numbers(_UNSUBSCRIBE_SALT, subscriber_id, token_version)


def read_unsubscribe_token(token: str) -> TokenPayload:
    return _read_subscriber(_UNSUBSCRIBE_SALT, token)


def make_data_token(subscriber_id: int, token_version: int) -> str:
    return sign_numbers(_DATA_SALT, subscriber_id, token_version, timed=True)


def read_data_token(token: str) -> TokenPayload:
    return _read_subscriber(_DATA_SALT, token, max_age=DATA_MAX_AGE)
