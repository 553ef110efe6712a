"""Validating and normalising email addresses, including Unicode and IDN ones.

Django's EmailValidator only accepts ASCII local parts. Readers may have
internationalised addresses (RFC 6531/6532), so the local part may hold any
non-ASCII letter as well as the usual ASCII "atext". The domain is checked and
stored in its lower-case ASCII (IDNA 2008 / UTS 46) form, which every mail
server understands; ``display_email`` turns it back into Unicode for people.
Quoted local parts and IP-literal domains are valid but unused by real readers,
so they are refused with a clear message.
"""

import re
import unicodedata

import idna
from django.core.exceptions import ValidationError

MAX_EMAIL_LENGTH = 254
MAX_LOCAL_LENGTH = 64

# RFC 5322 atext: letters, digits and these printable ASCII symbols.
_ASCII_ATEXT = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+/=?^_`{|}~-")
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def _local_part_ok(local: str) -> bool:
    if not local or local.startswith(".") or local.endswith(".") or ".." in local:
        return False
    for char in local:
        if char == "." or char in _ASCII_ATEXT:
            continue
        if ord(char) < 128:
            return False
        # Non-ASCII: letters, marks, numbers and symbols are fine; spaces,
        # controls, separators and unassigned code points are not.
        if unicodedata.category(char)[0] in {"C", "Z"}:
            return False
    return True


def _ascii_domain(domain: str) -> str:
    if not domain or domain.endswith(".") or domain.startswith("["):
        raise ValidationError("Enter a valid email address.", code="invalid")
    try:
        ascii_domain = idna.encode(domain, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError) as exc:
        raise ValidationError("Enter a valid email address.", code="invalid") from exc
    labels = ascii_domain.split(".")
    if len(labels) < 2 or not all(_LABEL.match(label) for label in labels):
        raise ValidationError("Enter a valid email address.", code="invalid")
    if labels[-1].isdigit():
        raise ValidationError("Enter a valid email address.", code="invalid")
    return ascii_domain


def normalize_email(value: str) -> str:
    """The stored form of an address, or ValidationError with a readable message."""
    if not isinstance(value, str):
        raise ValidationError("Enter a valid email address.", code="invalid")
    if "\r" in value or "\n" in value:
        raise ValidationError("An email address cannot contain line breaks.", code="line_break")
    value = value.strip()
    if not value:
        raise ValidationError("Enter your email address.", code="required")
    if len(value) > MAX_EMAIL_LENGTH:
        raise ValidationError(
            f"An email address can have at most {MAX_EMAIL_LENGTH} characters.", code="max_length"
        )
    local, at, domain = value.rpartition("@")
    if not at or not local:
        raise ValidationError("Enter a valid email address.", code="invalid")
    local = unicodedata.normalize("NFC", local)
    if local.startswith('"'):
        raise ValidationError("Quoted email addresses are not supported.", code="quoted")
    if not _local_part_ok(local) or len(local.encode("utf-8")) > MAX_LOCAL_LENGTH:
        raise ValidationError("Enter a valid email address.", code="invalid")
    email = f"{local}@{_ascii_domain(domain)}"
    if len(email.encode("utf-8")) > MAX_EMAIL_LENGTH:
        raise ValidationError(
            f"An email address can have at most {MAX_EMAIL_LENGTH} characters.", code="max_length"
        )
    return email


def display_email(email: str) -> str:
    """The address with its domain in Unicode, for pages and greetings."""
    local, _, domain = email.rpartition("@")
    try:
        return f"{local}@{idna.decode(domain)}"
    except (idna.IDNAError, UnicodeError):
        return email


def validate_email_address(value: str) -> None:
    """Model field validator: the value must be a valid address."""
    normalize_email(value)
