"""The client's address, as far as this deployment can establish it.

Kept as consent evidence and used as the signup rate-limit key, so it must be
what our own proxies saw, never what the client claims. With no trusted proxy
configured only ``REMOTE_ADDR`` counts and any forwarding header is ignored.
Behind ``TRUSTED_PROXY_COUNT`` reverse proxies, each of which appends the
address it received the request from to ``TRUSTED_PROXY_HEADER``, the client
is the entry the outermost proxy wrote: entries further left were written by
the client itself and are ignored. With ``TRUSTED_PROXIES`` the header is only
read when the request really comes from one of those addresses.

The header is parsed by django-ipware. A missing, short or garbled header
establishes nothing (None), which is never an error.
"""

import ipaddress
import logging
from functools import lru_cache

from django.conf import settings
from django.http import HttpRequest
from ipware import get_client_ip

logger = logging.getLogger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=8)
def _networks(entries: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)


def _address(value: object) -> str | None:
    try:
        return str(ipaddress.ip_address(str(value).strip()))
    except ValueError:
        return None


def _from_trusted_proxy(remote: str | None) -> bool:
    proxies = tuple(settings.TRUSTED_PROXIES)
    if not proxies:
        return True
    if remote is None:
        return False
    address = ipaddress.ip_address(remote)
    return any(address in network for network in _networks(proxies))


def client_ip(request: HttpRequest) -> str | None:
    """The established client address, or None when it cannot be established."""
    remote = _address(request.META.get("REMOTE_ADDR", ""))
    hops = settings.TRUSTED_PROXY_COUNT
    if not hops:
        return remote
    if not _from_trusted_proxy(remote):
        # Someone reached the app directly, around the proxies: their forwarding
        # header is their own invention, but their connection's address is real.
        return remote
    # ipware counts the proxies in the chain; the nearest one is REMOTE_ADDR, which
    # is not in the header, so it is appended as the last hop.
    header = str(request.META.get(settings.TRUSTED_PROXY_HEADER, "")).strip()
    if remote is None:
        return None
    chain = HttpRequest()
    chain.META = {settings.TRUSTED_PROXY_HEADER: f"{header}, {remote}" if header else remote}
    try:
        found, _routable = get_client_ip(
            chain,
            proxy_order="left-most",  # the client's end of the chain; hops counted from the right
            proxy_count=hops,
            request_header_order=[settings.TRUSTED_PROXY_HEADER],
            strict=False,
        )
    except ValueError:  # python-ipware refuses some malformed chains outright
        found = None
    return _address(found) if found else None
