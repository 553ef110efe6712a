import pytest
from django.core.exceptions import ValidationError
from hypothesis import given
from hypothesis import strategies as st

from subscribers.addresses import display_email, normalize_email


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        (" Ada@Example.ORG ", "Ada@example.org"),
        ("first.last+tag@sub.example.co.uk", "first.last+tag@sub.example.co.uk"),
        ("ñandú@Ejemplo.ES", "ñandú@ejemplo.es"),
        ("x@BÜCHER.de", "x@xn--bcher-kva.de"),
        ("x@xn--bcher-kva.de", "x@xn--bcher-kva.de"),
    ],
)
def test_valid_addresses_are_normalised(typed, stored):
    assert normalize_email(typed) == stored


@pytest.mark.parametrize(
    "bad",
    [
        "plain",
        "@example.org",
        "a@",
        "a@localhost",
        "a@example.123",
        "a..b@example.org",
        ".a@example.org",
        "a b@example.org",
        "a@exa mple.org",
        "a@-example.org",
        "a@example.org.",
        "a@[127.0.0.1]",
        '"quoted"@example.org',
        "a\u200b@example.org",
        "a@example.org\r\nBcc: x@example.org",
        "a" * 65 + "@example.org",
        "a@" + "b" * 250 + ".org",
        "a<b>@example.org",
    ],
)
def test_invalid_addresses_are_refused_with_a_message(bad):
    with pytest.raises(ValidationError) as info:
        normalize_email(bad)
    assert info.value.messages[0]


def test_display_email_shows_the_domain_in_unicode():
    assert display_email("x@xn--bcher-kva.de") == "x@bücher.de"


@given(st.text(max_size=80))
def test_normalise_never_crashes_and_its_output_is_stable(text):
    try:
        stored = normalize_email(text)
    except ValidationError:
        return
    assert normalize_email(stored) == stored
    assert "\n" not in stored and "\r" not in stored
