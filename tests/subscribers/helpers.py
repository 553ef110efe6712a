"""Reading the emails the tests send."""

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
