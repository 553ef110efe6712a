"""The client address behind each proxy setting, as the signup limit and the consent record see it.

Every test here runs with the limiter on."""

import logging

import pytest
from django.test import RequestFactory

from subscribers.clientip import client_ip
from subscribers.models import OutgoingEmail, Subscriber

pytestmark = pytest.mark.django_db

SIGNUP = "/"
PROXY = "10.0.0.7"


def form(n: int) -> dict:
    return {"email": f"r{n}@example.org", "topics": ["reasoning"], "frequency": "daily", "weekday": "0"}


@pytest.fixture(autouse=True)
def limiter_on(settings):
    settings.SIGNUP_RATE_LIMIT = "5/h"
    from django.core.cache import cache

    cache.clear()


def statuses(client, headers_for) -> list[int]:
    return [client.post(SIGNUP, form(n), **headers_for(n)).status_code for n in range(12)]


def stored_ips() -> set:
    return {row.payload["ip"] for row in OutgoingEmail.objects.filter(kind=OutgoingEmail.Kind.SIGNUP)}


def test_without_a_proxy_a_forged_forwarding_header_changes_nothing(client, settings):
    settings.TRUSTED_PROXY_COUNT = 0
    got = statuses(
        client, lambda n: {"REMOTE_ADDR": "198.51.100.4", "HTTP_X_FORWARDED_FOR": f"203.0.113.{n}"}
    )
    # Before, the client chose its own address and 12 of 12 passed a limit of 5.
    assert got == [302] * 5 + [429] * 7
    assert stored_ips() == {"198.51.100.4"}


def test_behind_one_proxy_the_entry_it_wrote_counts(client, settings):
    settings.TRUSTED_PROXY_COUNT = 1
    # The client prepends whatever it likes; the proxy appends the real address.
    got = statuses(
        client, lambda n: {"REMOTE_ADDR": PROXY, "HTTP_X_FORWARDED_FOR": f"203.0.113.{n}, 198.51.100.9"}
    )
    assert got == [302] * 5 + [429] * 7
    assert stored_ips() == {"198.51.100.9"}
    # Another real client has a bucket of its own.
    other = client.post(SIGNUP, form(99), REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR="198.51.100.10")
    assert other.status_code == 302


def test_behind_two_proxies_the_outer_ones_entry_counts(client, settings):
    settings.TRUSTED_PROXY_COUNT = 2
    got = statuses(
        client,
        lambda n: {"REMOTE_ADDR": PROXY, "HTTP_X_FORWARDED_FOR": f"203.0.113.{n}, 198.51.100.9, 10.0.0.3"},
    )
    assert got == [302] * 5 + [429] * 7
    assert stored_ips() == {"198.51.100.9"}


def test_trusted_proxies_only_the_listed_ones_may_forward(client, settings):
    settings.TRUSTED_PROXY_COUNT = 1
    settings.TRUSTED_PROXIES = ["10.0.0.0/24"]
    via_proxy = client.post(SIGNUP, form(1), REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR="198.51.100.9")
    # Straight to the app, around the proxy: the header is the client's own invention.
    direct = statuses(
        client, lambda n: {"REMOTE_ADDR": "192.0.2.50", "HTTP_X_FORWARDED_FOR": f"203.0.113.{n}"}
    )
    assert via_proxy.status_code == 302
    assert direct == [302] * 5 + [429] * 7
    assert stored_ips() == {"198.51.100.9", "192.0.2.50"}


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "garbage",
        "198.51.100.9, garbage",
        "   ,  , ",
        "1.2.3.4" * 300,
        "unknown, 198.51.100.9",
        "[2001:db8::1]:443",
        "2001:db8::1, ::ffff:198.51.100.9",
        "\x00\r\n",
        "198.51.100.9, 203.0.113.1, 10.0.0.1, 10.0.0.2, 10.0.0.3",
    ],
)
@pytest.mark.parametrize("hops", [0, 1, 2])
def test_missing_multi_hop_or_garbage_headers_are_never_a_500(client, settings, header, hops):
    settings.TRUSTED_PROXY_COUNT = hops
    settings.SIGNUP_RATE_LIMIT = "1000/h"
    extra = {} if header is None else {"HTTP_X_FORWARDED_FOR": header}
    response = client.post(SIGNUP, form(1), REMOTE_ADDR=PROXY, **extra)
    assert response.status_code == 302
    (ip,) = stored_ips()
    if hops == 0:
        assert ip == PROXY
    else:
        assert ip is None or ip in (header or "") or ip == "198.51.100.9"


def test_what_cannot_be_established_is_stored_as_unknown_and_shares_one_bucket(client, settings):
    settings.TRUSTED_PROXY_COUNT = 1
    got = statuses(client, lambda n: {"REMOTE_ADDR": PROXY, "HTTP_X_FORWARDED_FOR": "x" * n})
    assert got == [302] * 5 + [429] * 7
    assert stored_ips() == {None}


def test_the_consent_record_keeps_the_established_address(client, settings, commit):
    settings.TRUSTED_PROXY_COUNT = 1
    with commit():
        client.post(SIGNUP, form(1), REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR="6.6.6.6, 198.51.100.9")
    assert Subscriber.objects.get().signup_ip == "198.51.100.9"


def test_client_ip_reads_remote_addr_of_ipv6_clients(settings):
    settings.TRUSTED_PROXY_COUNT = 0
    request = RequestFactory().get("/", REMOTE_ADDR="2001:DB8::0001")
    assert client_ip(request) == "2001:db8::1"


def test_limit_fails_open_with_a_warning_when_the_cache_is_down(client, settings, caplog):
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
        }
    }
    with caplog.at_level(logging.WARNING, logger="subscribers.ratelimits"):
        got = [client.post(SIGNUP, form(n), REMOTE_ADDR="198.51.100.4").status_code for n in range(3)]
    assert got == [302, 302, 302]
    assert "signup rate limit not checked" in caplog.text and "ConnectionError" in caplog.text
    assert OutgoingEmail.objects.filter(kind=OutgoingEmail.Kind.SIGNUP).count() == 3


def test_the_old_header_setting_is_gone(settings):
    assert not hasattr(settings, "RATELIMIT_IP_META_KEY")
