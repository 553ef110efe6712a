"""The fake ESP behind anymail's Postmark backend (one call per reader) or its
SendGrid backend (batches), and the `esp_path` fixture that runs a test on both."""

import pytest

from tests.digest.sending_support import make_readers
from tests.fake_esp import FakeESP


def use_postmark(settings, server: FakeESP) -> None:
    settings.EMAIL_BACKEND = "anymail.backends.postmark.EmailBackend"
    settings.ANYMAIL = {
        "POSTMARK_SERVER_TOKEN": "test-token",
        "POSTMARK_API_URL": server.url,
        "REQUESTS_TIMEOUT": 0.5,
    }
    settings.DIGEST_SEND_BACKOFF = 0.01
    settings.SITE_URL = "https://digest.example.org"


def use_sendgrid(settings, server: FakeESP) -> None:
    settings.EMAIL_BACKEND = "anymail.backends.sendgrid.EmailBackend"
    settings.ANYMAIL = {
        "SENDGRID_API_KEY": "test-key",
        "SENDGRID_API_URL": server.url + "v3/",
        "REQUESTS_TIMEOUT": 0.5,
    }
    settings.DIGEST_ESP_BATCH = "auto"
    settings.DIGEST_ESP_BATCH_SIZE = 5
    settings.DIGEST_SEND_BACKOFF = 0.01
    settings.SITE_URL = "https://digest.example.org"


@pytest.fixture
def postmark_esp(settings):
    with FakeESP() as server:
        use_postmark(settings, server)
        yield server


@pytest.fixture
def sendgrid_esp(settings):
    with FakeESP() as server:
        use_sendgrid(settings, server)
        yield server


@pytest.fixture(params=["single", "batch"])
def esp_path(request, settings):
    """The fake ESP, once per sending path: `single` (Postmark, one call per
    reader) and `batch` (SendGrid, up to 5 readers a call)."""
    with FakeESP() as server:
        (use_postmark if request.param == "single" else use_sendgrid)(settings, server)
        server.path = request.param
        yield server


@pytest.fixture
def readers(db):
    """Twelve readers who all get the same two-paper digest."""
    return make_readers()
