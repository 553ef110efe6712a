from email import message_from_bytes, policy

from django.core import mail
from django.core.mail import EmailMultiAlternatives

from mail.backends import OutboxEmailBackend


def build_message(to: str, subject: str) -> EmailMultiAlternatives:
    message = EmailMultiAlternatives(
        subject=subject,
        body=f"Plain text for {to}: naïve café ✓",
        from_email="Paperboy <digest@example.org>",
        to=[to],
        headers={"List-Unsubscribe": "<https://example.org/u/abc/>"},
    )
    message.attach_alternative(f"<p>HTML for <b>{to}</b></p>", "text/html")
    return message


def test_outbox_writes_one_parseable_eml_per_message_with_both_parts(tmp_path):
    backend = OutboxEmailBackend(outbox_dir=tmp_path)
    sent = backend.send_messages(
        [build_message("ada@example.org", "One"), build_message("bob@example.org", "Two")]
    )

    assert sent == 2
    files = sorted(tmp_path.glob("*.eml"))
    assert len(files) == 2
    assert not list(tmp_path.glob("*.partial"))

    parsed = {}
    for path in files:
        msg = message_from_bytes(path.read_bytes(), policy=policy.default)
        parsed[msg["To"]] = msg
    assert set(parsed) == {"ada@example.org", "bob@example.org"}

    ada = parsed["ada@example.org"]
    assert ada["Subject"] == "One"
    assert ada["List-Unsubscribe"] == "<https://example.org/u/abc/>"
    assert ada.get_content_type() == "multipart/alternative"
    text = ada.get_body(preferencelist=("plain",)).get_content()
    html = ada.get_body(preferencelist=("html",)).get_content()
    assert "Plain text for ada@example.org: naïve café ✓" in text
    assert "<b>ada@example.org</b>" in html


def test_outbox_is_the_default_backend_outside_tests(settings, isolated_outbox):
    settings.EMAIL_BACKEND = "mail.backends.OutboxEmailBackend"
    connection = mail.get_connection()
    assert connection.send_messages([build_message("cy@example.org", "Three")]) == 1
    files = list(isolated_outbox.glob("*.eml"))
    assert len(files) == 1
    assert "cy_at_example.org" in files[0].name


def test_outbox_with_no_messages_creates_nothing(tmp_path):
    backend = OutboxEmailBackend(outbox_dir=tmp_path / "never")
    assert backend.send_messages([]) == 0
    assert not (tmp_path / "never").exists()
