"""A worker loads the send path when it becomes ready, not in its first chunk."""

import sys

import pytest


@pytest.fixture(autouse=True)
def restore_switch_interval():
    """prepare_worker tunes the process it runs in: give the rest of the suite Python's own setting back."""
    before = sys.getswitchinterval()
    yield
    sys.setswitchinterval(before)


def test_a_ready_worker_has_the_send_path_and_the_digest_templates_loaded(settings):
    from config.celery_app import prepare_worker
    from mail.build import email_template

    settings.EMAIL_BACKEND = "anymail.backends.sendgrid.EmailBackend"
    email_template.cache_clear()
    prepare_worker()
    assert "anymail.backends.sendgrid" in sys.modules
    assert "digest.services.send" in sys.modules
    assert email_template.cache_info().currsize == 2


def test_a_ready_worker_collects_young_objects_less_often_and_never_scans_what_it_loaded():
    import gc

    from config.celery_app import WORKER_GC_THRESHOLD, prepare_worker

    before = gc.get_threshold()
    try:
        prepare_worker()
        assert gc.get_threshold() == WORKER_GC_THRESHOLD
        assert gc.get_freeze_count() > 10_000
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_a_ready_worker_hands_the_interpreter_between_threads_less_often():
    from config.celery_app import WORKER_SWITCH_INTERVAL, prepare_worker

    assert sys.getswitchinterval() == 0.005  # Python's default
    prepare_worker()
    assert sys.getswitchinterval() == WORKER_SWITCH_INTERVAL > 0.005
