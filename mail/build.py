"""The one way every email is built.

Each email is a pair of templates: ``templates/emails/<name>.mjml`` (rendered by
Django with autoescaping on, then compiled to HTML by mjml-python) and
``templates/emails/<name>.txt`` (rendered with autoescaping off, since plain
text must not contain HTML entities). The builder sets the headers and returns
an anymail message, which every configured backend (outbox, SMTP, ESP) can send.
"""

from dataclasses import dataclass
from email.utils import make_msgid
from functools import lru_cache
from typing import cast
from urllib.parse import urlsplit

from anymail.message import AnymailMessage
from django.conf import settings
from django.template import Context, engines
from django.template.backends.django import DjangoTemplates
from mjml import mjml2html


class EmailRenderError(Exception):
    pass


@dataclass(frozen=True)
class RenderedEmail:
    text: str
    html: str


@lru_cache(maxsize=64)
def email_template(path: str):
    # The underlying django.template.base.Template, so the context's autoescape
    # flag can differ between the HTML and text parts.
    return cast(DjangoTemplates, engines["django"]).engine.get_template(path)


def render_mjml(source: str) -> str:
    """Compile MJML markup to email-safe HTML, failing loudly on invalid markup."""
    try:
        # No web fonts: MJML links Google Fonts for any Roboto in a font stack,
        # which would tell a third party whenever a reader opens an email. The
        # stacks fall back to the reader's system fonts.
        return mjml2html(source, fonts={})
    except Exception as exc:  # mjml-python raises its own error types from Rust
        raise EmailRenderError(f"MJML could not be compiled: {exc}") from exc


def render_email(name: str, context: dict, *, tidy: bool = True) -> RenderedEmail:
    """Both parts of an email. `tidy=False` keeps the text part exactly as the
    template rendered it, for callers that assemble it from pieces and tidy the whole."""
    base = {"product_name": settings.PRODUCT_NAME, "site_url": settings.SITE_URL}
    base.update(context)
    mjml_source = email_template(f"emails/{name}.mjml").render(Context(base, autoescape=True))
    text = email_template(f"emails/{name}.txt").render(Context(base, autoescape=False))
    return RenderedEmail(text=tidy_text(text) if tidy else text, html=render_mjml(mjml_source))


def tidy_text(text: str) -> str:
    # Template tags leave runs of blank lines; keep at most one.
    lines = [line.rstrip() for line in text.strip().splitlines()]
    tidy: list[str] = []
    for line in lines:
        if line or (tidy and tidy[-1]):
            tidy.append(line)
    return "\n".join(tidy) + "\n"


def message_domain() -> str:
    return urlsplit(settings.SITE_URL).hostname or "localhost"


def build_message(
    *,
    to: str,
    subject: str,
    text: str,
    html: str,
    headers: dict | None = None,
    tags: list[str] | None = None,
    metadata: dict | None = None,
    from_email: str | None = None,
) -> AnymailMessage:
    """An anymail message with both parts and a Message-ID of our own domain."""
    all_headers = {"Message-ID": make_msgid(domain=message_domain())}
    all_headers.update(headers or {})
    message = AnymailMessage(
        subject=subject,
        body=text,
        from_email=from_email or settings.DEFAULT_FROM_EMAIL,
        to=[to],
        headers=all_headers,
    )
    message.attach_alternative(html, "text/html")
    if tags:
        message.tags = tags
    if metadata:
        message.metadata = metadata
    return message


def build_email(
    *,
    name: str,
    to: str,
    subject: str,
    context: dict,
    headers: dict | None = None,
    tags: list[str] | None = None,
    metadata: dict | None = None,
) -> AnymailMessage:
    """Render templates/emails/<name>.{mjml,txt} and wrap them in a message."""
    rendered = render_email(name, context)
    return build_message(
        to=to,
        subject=subject,
        text=rendered.text,
        html=rendered.html,
        headers=headers,
        tags=tags or [name],
        metadata=metadata,
    )
