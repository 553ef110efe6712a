import pytest


@pytest.fixture
def postmark_at_fake_esp(settings):
    """An open anymail Postmark connection pointed at a running fake ESP: (esp, connection)."""
    from django.core.mail import get_connection

    from tests.fake_esp import FakeESP

    with FakeESP() as esp:
        settings.EMAIL_BACKEND = "anymail.backends.postmark.EmailBackend"
        settings.ANYMAIL = {"POSTMARK_SERVER_TOKEN": "t", "POSTMARK_API_URL": esp.url}
        connection = get_connection()
        connection.open()
        try:
            yield esp, connection
        finally:
            connection.close()
