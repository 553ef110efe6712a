"""Public pages under a strict Content-Security-Policy; production cookies, HSTS
and the admin's path; `check --deploy` clean."""

import json
import subprocess
import sys

import pytest

from subscribers.tokens import make_unsubscribe_token
from tests.subscribers.factories import SubscriberFactory
from tests.support import BASE_DIR, app_env, run_python

pytestmark = pytest.mark.django_db

PRODUCTION = {
    "DATABASE_URL": "postgres://app:pw@db.internal:5432/paperboy",
    "REDIS_URL": "redis://cache.internal:6379/0",
    "DJANGO_SECRET_KEY": "q8Zr-2vLmX7_pW0aT4nK9sE1bY6cH3jU5fG8dR2zQ0oV7iM4lN",
    "SITE_URL": "https://digest.example.org",
    "EMAIL_BACKEND": "anymail.backends.postmark.EmailBackend",
    "ANYMAIL_POSTMARK_SERVER_TOKEN": "token",
    "ANYMAIL_WEBHOOK_SECRET": "hook-user:hook-password",
    "ADMIN_URL": "backstage-7f3a/",
}


def policy(response) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]
    return {part.split()[0]: part.split()[1:] for part in header.split(";") if part.strip()}


def public_paths() -> list[str]:
    reader = SubscriberFactory(status="active", topics=["reasoning"])
    return [
        "/",
        "/signup/done/",
        f"/unsubscribe/{make_unsubscribe_token(reader.pk, reader.token_version)}/",
        "/confirm/forged-token/",
        "/feedback/forged/up/",
    ]


def test_public_pages_forbid_scripts_inline_styles_and_framing(client):
    for path in public_paths():
        response = client.get(path)
        assert response.status_code in (200, 400), path
        directives = policy(response)
        assert directives["default-src"] == ["'none'"], path
        assert directives["script-src"] == ["'self'"], path
        assert directives["style-src"] == ["'self'"], path
        assert directives["frame-ancestors"] == ["'none'"], path
        assert directives["form-action"] == ["'self'"], path
        assert directives["base-uri"] == ["'none'"] and directives["object-src"] == ["'none'"], path
        assert response["X-Frame-Options"] == "DENY"
        assert response["X-Content-Type-Options"] == "nosniff"


def test_admin_alone_may_use_inline_styles_and_remote_images(client, settings):
    directives = policy(client.get(f"/{settings.ADMIN_URL}login/"))
    assert directives["style-src"] == ["'self'", "'unsafe-inline'"]
    assert directives["img-src"] == ["'self'", "data:", "https:"]
    assert directives["script-src"] == ["'self'"]  # never inline scripts, not even in the admin


def test_site_templates_carry_no_inline_script_or_style():
    offenders = []
    for template in sorted((BASE_DIR / "templates").rglob("*.html")):
        text = template.read_text()
        for marker in ("<script", "<style", " style=", " onclick=", " onload=", "javascript:"):
            if marker in text:
                offenders.append(f"{template.relative_to(BASE_DIR)}: {marker.strip()}")
    assert not offenders, offenders


PROBE = """
import json, django
django.setup()
from django.conf import settings
from django.test import Client
client = Client(HTTP_HOST="digest.example.org", **{"wsgi.url_scheme": "https"})
print(json.dumps({
    "session_secure": settings.SESSION_COOKIE_SECURE,
    "csrf_secure": settings.CSRF_COOKIE_SECURE,
    "session_httponly": settings.SESSION_COOKIE_HTTPONLY,
    "hsts": settings.SECURE_HSTS_SECONDS,
    "hsts_subdomains": settings.SECURE_HSTS_INCLUDE_SUBDOMAINS,
    "ssl_redirect": settings.SECURE_SSL_REDIRECT,
    "new_admin": client.get("/backstage-7f3a/login/", secure=True).status_code,
    "old_admin": client.get("/admin/login/", secure=True).status_code,
    "plain_http": client.get("/", secure=False).status_code,
    "hsts_header": client.get("/signup/done/", secure=True).headers.get("Strict-Transport-Security", ""),
}))
"""


def test_production_cookies_hsts_redirect_and_admin_path():
    result = run_python(PROBE, **PRODUCTION)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["session_secure"] and seen["csrf_secure"] and seen["session_httponly"]
    assert seen["hsts"] >= 31536000 and seen["hsts_subdomains"]
    assert "max-age=31536000" in seen["hsts_header"] and "includeSubDomains" in seen["hsts_header"]
    assert seen["ssl_redirect"] and seen["plain_http"] == 301
    assert seen["new_admin"] == 200
    assert seen["old_admin"] == 404  # the default path gives nothing away


def test_check_deploy_is_clean_with_a_custom_admin_path_and_the_csp():
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=BASE_DIR,
        env=app_env(**PRODUCTION),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout
