"""Signed tokens: purpose-bound, compact, tamper-evident; confirm links expire."""

import time

import pytest
from django.core import signing
from hypothesis import example, given
from hypothesis import strategies as st

from subscribers import tokens
from subscribers.selectors import subscriber_from_token
from subscribers.tokens import InvalidToken


@given(
    subscriber_id=st.integers(min_value=1, max_value=2**53), version=st.integers(min_value=1, max_value=10**6)
)
def test_manage_and_unsubscribe_tokens_round_trip(subscriber_id, version):
    for make, read in (
        (tokens.make_manage_token, tokens.read_manage_token),
        (tokens.make_unsubscribe_token, tokens.read_unsubscribe_token),
    ):
        payload = read(make(subscriber_id, version))
        assert (payload.subscriber_id, payload.token_version) == (subscriber_id, version)


def test_tokens_are_short_and_url_safe():
    token = tokens.make_unsubscribe_token(123456789, 3)
    assert len(token) < 60
    assert all(char.isalnum() or char in "-_." for char in token)


def test_a_token_for_one_purpose_never_opens_another():
    manage = tokens.make_manage_token(5, 1)
    with pytest.raises(InvalidToken):
        tokens.read_unsubscribe_token(manage)
    with pytest.raises(InvalidToken):
        tokens.read_confirm_token(manage)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-1],
        lambda t: t[: len(t) // 2],
        lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),
        lambda t: "1" + t,
        lambda t: t.replace(".", ":"),
        lambda t: "",
        lambda t: "x" * 500,
        lambda t: "garbage",
    ],
)
def test_tampered_or_truncated_tokens_raise_invalid_token(mangle):
    token = tokens.make_unsubscribe_token(42, 1)
    with pytest.raises(InvalidToken):
        tokens.read_unsubscribe_token(mangle(token))


@pytest.mark.django_db
def test_confirm_token_expires_after_seven_days(monkeypatch, pending):
    fresh = tokens.make_confirm_token(pending)
    assert tokens.read_confirm_token(fresh).subscriber_id == pending.pk
    eight_days_ago = int(time.time()) - 8 * 24 * 3600
    monkeypatch.setattr(signing.TimestampSigner, "timestamp", lambda self: signing.b62_encode(eight_days_ago))
    old = tokens.make_confirm_token(pending)
    monkeypatch.undo()
    with pytest.raises(InvalidToken):
        tokens.read_confirm_token(old)


@pytest.mark.django_db
def test_bumping_token_version_revokes_every_link(active):
    token = tokens.make_manage_token(active.pk, active.token_version)
    assert subscriber_from_token(token=token, purpose="manage") == active
    active.token_version += 1
    active.save()
    with pytest.raises(InvalidToken):
        subscriber_from_token(token=token, purpose="manage")


@pytest.mark.django_db
def test_tokens_of_deleted_subscribers_are_invalid(active):
    token = tokens.make_unsubscribe_token(active.pk, active.token_version)
    active.delete()
    with pytest.raises(InvalidToken):
        subscriber_from_token(token=token, purpose="unsubscribe")


def test_a_token_carrying_more_or_fewer_numbers_than_expected_is_refused():
    three = tokens.sign_numbers("some.purpose", 1, 2, 3)
    assert tokens.read_numbers("some.purpose", three, count=3) == (1, 2, 3)
    for count in (2, 4):
        with pytest.raises(InvalidToken):
            tokens.read_numbers("some.purpose", three, count=count)


@pytest.mark.parametrize("value", ["-5-1", "5-", "5-!", "5-" + "z" * 13, "5"])
def test_a_validly_signed_value_that_is_not_base62_numbers_is_refused(value):
    token = signing.Signer(salt="some.purpose", sep=".").sign(value)
    with pytest.raises(InvalidToken):
        tokens.read_numbers("some.purpose", token, count=2)


def test_negative_numbers_are_never_signed():
    with pytest.raises(ValueError):
        tokens.sign_numbers("some.purpose", -1, 1)


@pytest.mark.parametrize("value", ["1z-7Q-1", "", "ünïcode", "a" * 300])
@pytest.mark.parametrize("key", ["one key", b"bytes key"])
def test_the_signer_that_derives_its_key_once_signs_exactly_as_djangos(value, key):
    from django.core import signing

    from subscribers.tokens import KeyedSigner

    ours = KeyedSigner(key=key, salt="digest.feedback", sep=".")
    assert ours.sign(value) == signing.Signer(key=key, salt="digest.feedback", sep=".").sign(value)
    assert ours.sign(value) == ours.sign(value)  # the cached key is not consumed by a signature
    assert ours.unsign(ours.sign(value)) == value


@pytest.mark.parametrize(
    "viewname", ["subscribers:unsubscribe", "subscribers:manage", "digest:view", "digest:feed"]
)
def test_a_spliced_token_url_is_the_one_reverse_builds(settings, viewname):
    from django.urls import reverse

    from subscribers.links import token_url
    from subscribers.tokens import make_manage_token

    token = make_manage_token(12345, 3)
    assert token_url(viewname, token) == settings.SITE_URL + reverse(viewname, args=[token])
    settings.SITE_URL = "https://papers.example.net"
    assert token_url(viewname, token) == "https://papers.example.net" + reverse(viewname, args=[token])


@given(key=st.binary(max_size=200), value=st.binary(max_size=300))
@example(key=b"", value=b"")
@example(key=b"k" * 64, value=b"one block of key")
@example(key=b"k" * 65, value=b"a key longer than a block is hashed first")
def test_the_precomputed_hmac_is_hmac_sha256(key, value):
    import hashlib
    import hmac

    from subscribers.tokens import _Mac

    mac = _Mac(key)
    assert mac.digest(value) == hmac.new(key, value, hashlib.sha256).digest()
    assert mac.digest(value) == mac.digest(value)  # the key's states are copied, never consumed
