from types import SimpleNamespace

import pytest

from mail.build import EmailRenderError, build_email, build_message, render_email, render_mjml, tidy_text

HOSTILE = '<b>x</b> & "y"'


def _context(**extra):
    subscriber = SimpleNamespace(display_email=HOSTILE, status="active")
    return {
        "subscriber": subscriber,
        "manage_url": "https://digest.example.org/manage/t/",
        "unsubscribe_url": "https://digest.example.org/unsubscribe/t/",
        **extra,
    }


def test_html_part_is_escaped_and_text_part_is_kept_as_written(settings):
    settings.PRODUCT_NAME = "Paperboy"
    rendered = render_email("manage_link", _context())

    assert "&lt;b&gt;x&lt;/b&gt; &amp;" in rendered.html
    assert HOSTILE not in rendered.html
    assert HOSTILE in rendered.text
    assert "&lt;" not in rendered.text and "&amp;" not in rendered.text
    assert rendered.html.lstrip().lower().startswith("<!doctype html")


def test_compiled_html_links_no_web_fonts():
    rendered = render_email("manage_link", _context())

    assert "fonts.googleapis.com" not in rendered.html


def test_invalid_mjml_is_a_clear_error():
    with pytest.raises(EmailRenderError, match="MJML could not be compiled"):
        render_mjml("<mjml><mj-body><mj-section>")


def test_tidy_text_keeps_at_most_one_blank_line_and_ends_with_a_newline():
    assert tidy_text("\n\nA  \n\n\n\nB\n\n") == "A\n\nB\n"


def test_message_has_both_parts_our_message_id_and_caller_headers(settings):
    settings.SITE_URL = "https://digest.example.org"
    settings.DEFAULT_FROM_EMAIL = "Paperboy <digest@example.org>"

    message = build_message(
        to="ada@example.org",
        subject="Hello",
        text="plain",
        html="<p>html</p>",
        headers={"List-Id": "<daily.digest.example.org>"},
        metadata={"delivery_id": "7"},
    )

    assert message.to == ["ada@example.org"]
    assert message.from_email == "Paperboy <digest@example.org>"
    assert message.body == "plain"
    assert message.alternatives[0][0] == "<p>html</p>"
    assert message.alternatives[0][1] == "text/html"
    assert message.extra_headers["Message-ID"].endswith("@digest.example.org>")
    assert message.extra_headers["List-Id"] == "<daily.digest.example.org>"
    assert message.metadata == {"delivery_id": "7"}


def test_a_caller_message_id_wins_over_the_generated_one():
    message = build_message(
        to="a@example.org", subject="s", text="t", html="h", headers={"Message-ID": "<x@y>"}
    )

    assert message.extra_headers["Message-ID"] == "<x@y>"


def test_build_email_tags_the_message_with_the_template_name():
    message = build_email(name="manage_link", to="ada@example.org", subject="Your link", context=_context())

    assert message.tags == ["manage_link"]
    assert "Manage my preferences" in message.alternatives[0][0]
    assert "https://digest.example.org/manage/t/" in message.body
