"""A worker loads the send path when it becomes ready, not in its first chunk."""

import sys


def test_a_ready_worker_has_the_send_path_and_the_digest_templates_loaded(settings):
    from config.celery_app import import_the_send_path
    from mail.build import email_template

    settings.EMAIL_BACKEND = "anymail.backends.sendgrid.EmailBackend"
    email_template.cache_clear()
    import_the_send_path()
    assert "anymail.backends.sendgrid" in sys.modules
    assert "digest.services.send" in sys.modules
    assert email_template.cache_info().currsize == 2
