"""Signed links and the List-Unsubscribe headers every email carries.

Each link opens one thing and nothing more:

* unsubscribe (in every List-Unsubscribe header, so seen by forwarded mails,
  scanners and archives): unsubscribes and resubscribes, never more;
* manage: the preference centre (topics, frequency, pause), from the reader's
  own emails;
* data: download or delete everything, valid for an hour and only mailed on
  request from the preference centre;
* confirm: the double opt-in, valid for 7 days.
"""

from functools import lru_cache
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from django.conf import settings
from django.urls import reverse

from subscribers import tokens

if TYPE_CHECKING:
    from subscribers.models import Subscriber


def absolute(path: str) -> str:
    return f"{settings.SITE_URL}{path}"


@lru_cache(maxsize=32)
def _around_token(viewname: str, site_url: str, urlconf: str) -> tuple[str, str]:
    # `urlconf` is part of the cache key only: a changed ROOT_URLCONF resolves afresh.
    before, _, after = f"{site_url}{reverse(viewname, args=['TOKEN'])}".partition("TOKEN")
    return before, after


def token_url(viewname: str, token: str) -> str:
    """Absolute URL of a view that takes one signed token. Every digest carries
    several, so each URL pattern is resolved once and the token spliced in
    (tokens are URL-safe: reverse would leave them as they are)."""
    before, after = _around_token(viewname, settings.SITE_URL, settings.ROOT_URLCONF)
    return before + token + after


def email_links(*, subscriber_id: int, token_version: int) -> dict[str, str]:
    """Absolute one-click unsubscribe and preference-centre URLs for one subscriber."""
    unsubscribe = tokens.make_unsubscribe_token(subscriber_id, token_version)
    manage = tokens.make_manage_token(subscriber_id, token_version)
    return {
        "unsubscribe_url": token_url("subscribers:unsubscribe", unsubscribe),
        "manage_url": token_url("subscribers:manage", manage),
    }


def list_headers(*, unsubscribe_url: str, frequency: str = "daily") -> dict[str, str]:
    """RFC 2369/2919/8058 headers: one-click unsubscribe and the list's identity.

    Daily and weekly digests are two lists, so a reader's filters can tell them apart."""
    name = "weekly" if frequency == "weekly" else "daily"
    return {
        "List-Unsubscribe": f"<{unsubscribe_url}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        "List-Id": _list_id(name, settings.PRODUCT_NAME, settings.SITE_URL),
    }


@lru_cache(maxsize=8)
def _list_id(name: str, product: str, site_url: str) -> str:
    host = urlsplit(site_url).hostname or "localhost"
    return f"{product} {name} digest <{name}.digest.{host}>"


def confirm_url(*, subscriber: "Subscriber") -> str:
    return absolute(reverse("subscribers:confirm", args=[tokens.make_confirm_token(subscriber)]))


def data_url(*, subscriber_id: int, token_version: int) -> str:
    """The short-lived page that downloads or deletes everything stored about a reader."""
    token = tokens.make_data_token(subscriber_id, token_version)
    return absolute(reverse("subscribers:data", args=[token]))
