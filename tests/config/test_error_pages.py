"""Branded error pages that need nothing but templates, and never turn into a 500."""

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db

CSRF = "errorpageerrorpageerrorpage01234"


@pytest.fixture
def production(settings):
    settings.DEBUG = False


def test_404_is_branded(client, production):
    response = client.get("/no-such-page/")
    assert response.status_code == 404
    assert "Page not found" in response.content.decode()
    assert 'href="/static/css/site.css"' in response.content.decode()


@pytest.mark.parametrize("path", ["/", "/manage/x/", "/feedback/x/up/"])
def test_a_body_django_cannot_parse_is_a_400_not_a_500(production, path):
    """Django's own error views run the CSRF check again, reading the body again: the
    form-encoded body declared as UTF-16 then raised inside the 400 handler."""
    client = Client(enforce_csrf_checks=True)
    client.cookies["csrftoken"] = CSRF
    response = client.generic(
        "POST",
        path,
        b"email=a%40example.org",
        "application/x-www-form-urlencoded; charset=utf-16",
        HTTP_X_CSRFTOKEN=CSRF,
    )
    assert response.status_code == 400
    assert "We could not read that request" in response.content.decode()


def test_a_missing_csrf_token_gets_a_branded_403(production):
    response = Client(enforce_csrf_checks=True).post("/", {"email": "a@example.org"})
    assert response.status_code == 403
    assert "This form has expired" in response.content.decode()


def test_admin_permission_denied_is_branded(production, django_user_model):
    staff = django_user_model.objects.create_user("plain-staff", is_staff=True)
    client = Client()
    client.force_login(staff)
    response = client.get("/admin/digest/digestrun/preview/")
    assert response.status_code == 403
    assert "You do not have permission" in response.content.decode()


def test_the_500_page_renders_with_no_request_and_no_database(django_assert_num_queries):
    from config.errors import server_error

    with django_assert_num_queries(0):
        response = server_error(None)
    assert response.status_code == 500
    assert "Something went wrong on our side" in response.content.decode()
