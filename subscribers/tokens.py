"""Signed tokens for the links in every email.

All tokens are ``django.core.signing`` signatures with one salt per purpose, so a
token made for one link never opens another. They carry only the subscriber id
(base62) and the subscriber's ``token_version``; bumping the version revokes
every link ever sent to that person.

* confirm: expires after ``CONFIRM_MAX_AGE`` (7 days).
* manage and unsubscribe: never expire, because they sit in old emails and must
  keep working (RFC 8058 expects the unsubscribe link to work for a long time).
* data (download or delete everything): expires after ``DATA_MAX_AGE`` (1 hour)
  and is only ever mailed on request, so an old email, a forwarded digest or a
  mail archive never holds a link that exports or erases the reader's data.

The manage and unsubscribe helpers take plain ints, so the digest can sign them
straight from ``values_list`` rows without loading model instances.
"""

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from django.core import signing

if TYPE_CHECKING:
    from subscribers.models import Subscriber

CONFIRM_MAX_AGE = timedelta(days=7)
DATA_MAX_AGE = timedelta(hours=1)

_CONFIRM_SALT = "subscribers.confirm"
_MANAGE_SALT = "subscribers.manage"
_UNSUBSCRIBE_SALT = "subscribers.unsubscribe"
_DATA_SALT = "subscribers.data"
# "." never occurs in a URL-safe base64 signature, so it is a safe separator and
# keeps tokens free of characters that need escaping in URLs.
_SEP = "."
_FIELD_SEP = "-"
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_MAX_TOKEN_LENGTH = 200


class InvalidToken(Exception):
    """The token is tampered, truncated, expired or revoked."""


@dataclass(frozen=True)
class TokenPayload:
    subscriber_id: int
    token_version: int


def b62_encode(number: int) -> str:
    if number < 0:
        raise ValueError("only non-negative numbers can be encoded")
    digits = []
    while True:
        number, rest = divmod(number, 62)
        digits.append(_ALPHABET[rest])
        if not number:
            return "".join(reversed(digits))


def b62_decode(text: str) -> int:
    if not text or len(text) > 12:
        raise InvalidToken("bad number")
    number = 0
    for char in text:
        index = _ALPHABET.find(char)
        if index < 0:
            raise InvalidToken("bad number")
        number = number * 62 + index
    return number


def _value(subscriber_id: int, token_version: int) -> str:
    return f"{b62_encode(int(subscriber_id))}{_FIELD_SEP}{b62_encode(int(token_version))}"


def _parse(value: str) -> TokenPayload:
    id_part, sep, version_part = value.partition(_FIELD_SEP)
    if not sep:
        raise InvalidToken("malformed token")
    return TokenPayload(subscriber_id=b62_decode(id_part), token_version=b62_decode(version_part))


def _signer(salt: str) -> signing.Signer:
    return signing.Signer(salt=salt, sep=_SEP)


def _timestamp_signer(salt: str) -> signing.TimestampSigner:
    return signing.TimestampSigner(salt=salt, sep=_SEP)


def _unsign(signer: signing.Signer, token: str, **kwargs) -> TokenPayload:
    if not isinstance(token, str) or not token or len(token) > _MAX_TOKEN_LENGTH:
        raise InvalidToken("missing or over-long token")
    try:
        value = signer.unsign(token, **kwargs)
    except signing.SignatureExpired as exc:
        raise InvalidToken("expired") from exc
    except signing.BadSignature as exc:
        raise InvalidToken("bad signature") from exc
    return _parse(value)


def make_confirm_token(subscriber: "Subscriber") -> str:
    return _timestamp_signer(_CONFIRM_SALT).sign(_value(subscriber.pk, subscriber.token_version))


def read_confirm_token(token: str) -> TokenPayload:
    return _unsign(_timestamp_signer(_CONFIRM_SALT), token, max_age=CONFIRM_MAX_AGE)


def make_manage_token(subscriber_id: int, token_version: int) -> str:
    return _signer(_MANAGE_SALT).sign(_value(subscriber_id, token_version))


def read_manage_token(token: str) -> TokenPayload:
    return _unsign(_signer(_MANAGE_SALT), token)


def make_unsubscribe_token(subscriber_id: int, token_version: int) -> str:
    return _signer(_UNSUBSCRIBE_SALT).sign(_value(subscriber_id, token_version))


def read_unsubscribe_token(token: str) -> TokenPayload:
    return _unsign(_signer(_UNSUBSCRIBE_SALT), token)


def make_data_token(subscriber_id: int, token_version: int) -> str:
    return _timestamp_signer(_DATA_SALT).sign(_value(subscriber_id, token_version))


def read_data_token(token: str) -> TokenPayload:
    return _unsign(_timestamp_signer(_DATA_SALT), token, max_age=DATA_MAX_AGE)
