"""Signed links to a reader's own web pages: one sent digest in the browser, and their Atom feed.

Both are ``django.core.signing`` signatures with a salt of their own, carrying
numbers only: the delivery (or subscriber) id and the subscriber's
``token_version`` at signing time. The views compare that version with the
subscriber's current one, so bumping it revokes these links with all others.
Neither expires: a digest in an old email keeps its link, and a feed reader
polls the same URL for years.
"""

from dataclasses import dataclass
from functools import lru_cache

from django.conf import settings
from django.core import signing
from django.urls import reverse

_VIEW_SALT = "digest.view"
_FEED_SALT = "digest.feed"
# "." never occurs in a URL-safe signature; "-" never in base62.
_SEP = "."
_FIELD_SEP = "-"
_MAX_TOKEN_LENGTH = 120


class InvalidLink(Exception):
    """The token was tampered with, truncated or made for another purpose."""


@dataclass(frozen=True)
class SignedRef:
    """The id a link points at (a delivery or a subscriber) and the token version it was signed with."""

    id: int
    token_version: int


def _signer(salt: str) -> signing.Signer:
    return signing.Signer(salt=salt, sep=_SEP)


def _sign(salt: str, number: int, token_version: int) -> str:
    value = f"{signing.b62_encode(number)}{_FIELD_SEP}{signing.b62_encode(token_version)}"
    return _signer(salt).sign(value)


def _read(salt: str, token: str) -> SignedRef:
    if not isinstance(token, str) or not token or len(token) > _MAX_TOKEN_LENGTH:
        raise InvalidLink("missing or over-long token")
    try:
        value = _signer(salt).unsign(token)
    except signing.BadSignature as exc:
        raise InvalidLink("bad signature") from exc
    number, sep, version = value.partition(_FIELD_SEP)
    if not sep or not number or not version:
        raise InvalidLink("malformed token")
    try:
        return SignedRef(id=signing.b62_decode(number), token_version=signing.b62_decode(version))
    except (ValueError, IndexError) as exc:
        raise InvalidLink("malformed token") from exc


def make_view_token(*, delivery_id: int, token_version: int) -> str:
    return _sign(_VIEW_SALT, delivery_id, token_version)


def read_view_token(token: str) -> SignedRef:
    return _read(_VIEW_SALT, token)


def make_feed_token(*, subscriber_id: int, token_version: int) -> str:
    return _sign(_FEED_SALT, subscriber_id, token_version)


def read_feed_token(token: str) -> SignedRef:
    return _read(_FEED_SALT, token)


@lru_cache(maxsize=8)
def _view_prefix(site_url: str) -> tuple[str, str]:
    # Every digest carries one of these links, so the URL is resolved once, not per reader.
    before, _, after = f"{site_url}{reverse('digest:view', args=['TOKEN'])}".partition("TOKEN")
    return before, after


def view_url(*, delivery_id: int, token_version: int) -> str:
    """Absolute "view in browser" URL of one sent digest."""
    before, after = _view_prefix(settings.SITE_URL)
    return before + make_view_token(delivery_id=delivery_id, token_version=token_version) + after


def feed_url(*, subscriber_id: int, token_version: int) -> str:
    """Absolute URL of a reader's personal Atom feed."""
    token = make_feed_token(subscriber_id=subscriber_id, token_version=token_version)
    return f"{settings.SITE_URL}{reverse('digest:feed', args=[token])}"
