"""Reading the emails and pages the tests get, and building the forms they post."""

import re

from django.core import mail


def html_of(message) -> str:
    return next(content for content, mimetype in message.alternatives if mimetype == "text/html")


def links_in(text: str) -> list[str]:
    return re.findall(r"https?://[^\s\"<>]+", text)


def path_of(url: str) -> str:
    return re.sub(r"^https?://[^/]+", "", url)


def only_message():
    assert len(mail.outbox) == 1, [m.subject for m in mail.outbox]
    return mail.outbox[0]


def form_data(defaults: dict, overrides: dict) -> dict:
    """A form's POST data: the defaults with the overrides, leaving out fields overridden with None."""
    return {key: value for key, value in {**defaults, **overrides}.items() if value is not None}


def assert_bad_link_page(response) -> None:
    """The friendly page for a link that does not work, with a 400."""
    assert response.status_code == 400
    assert "This link does not work" in response.content.decode()
