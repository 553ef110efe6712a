"""Signed links to a reader's own web pages: one sent digest in the browser, and their Atom feed.

Both are signed by ``subscribers.tokens`` like every other link, with a salt of
their own, carrying numbers only: the delivery (or subscriber) id and the
subscriber's ``token_version`` at signing time. A bad one raises
``subscribers.tokens.InvalidToken``. The views compare that version with the
subscriber's current one, so bumping it revokes these links with all others.
Neither expires: a digest in an old email keeps its link, and a feed reader
polls the same URL for years.
"""

from dataclasses import dataclass

from subscribers.links import token_url
from subscribers.tokens import read_numbers, sign_numbers

_VIEW_SALT = "digest.view"
_FEED_SALT = "digest.feed"


@dataclass(frozen=True)
class SignedRef:
    """The id a link points at (a delivery or a subscriber) and the token version it was signed with."""

    id: int
    token_version: int


def _read(salt: str, token: str) -> SignedRef:
    number, token_version = read_numbers(salt, token, count=2)
    return SignedRef(id=number, token_version=token_version)


def make_view_token(*, delivery_id: int, token_version: int) -> str:
    return sign_numbers(_VIEW_SALT, delivery_id, token_version)


def read_view_token(token: str) -> SignedRef:
    return _read(_VIEW_SALT, token)


def make_feed_token(*, subscriber_id: int, token_version: int) -> str:
    return sign_numbers(_FEED_SALT, subscriber_id, token_version)


def read_feed_token(token: str) -> SignedRef:
    return _read(_FEED_SALT, token)


def view_url(*, delivery_id: int, token_version: int) -> str:
    """Absolute "view in browser" URL of one sent digest."""
    return token_url("digest:view", make_view_token(delivery_id=delivery_id, token_version=token_version))


def feed_url(*, subscriber_id: int, token_version: int) -> str:
    """Absolute URL of a reader's personal Atom feed."""
    return token_url("digest:feed", make_feed_token(subscriber_id=subscriber_id, token_version=token_version))
