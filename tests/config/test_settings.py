"""Settings load in both modes; production refuses to start without a secret key."""

import json
import subprocess
import sys

from tests.support import BASE_DIR, app_env, run_python

PROBE = """
import json, django
from django.conf import settings
django.setup()
print(json.dumps({
    "mode": settings.DEPLOYMENT_MODE,
    "debug": settings.DEBUG,
    "engine": settings.DATABASES["default"]["ENGINE"],
    "db_name": str(settings.DATABASES["default"]["NAME"]),
    "eager": settings.CELERY_TASK_ALWAYS_EAGER,
    "broker": settings.CELERY_BROKER_URL,
    "cache": settings.CACHES["default"]["BACKEND"],
    "email_backend": settings.EMAIL_BACKEND,
    "outbox": str(settings.OUTBOX_DIR),
    "anymail": settings.ANYMAIL,
    "hsts": getattr(settings, "SECURE_HSTS_SECONDS", 0),
    "secure_cookie": getattr(settings, "SESSION_COOKIE_SECURE", False),
    "site_url": settings.SITE_URL,
}))
"""

EMBEDDED_ENV = {"DATABASE_URL": None, "REDIS_URL": None, "DJANGO_SECRET_KEY": None, "SITE_URL": None}


def run_probe(**env):
    return run_python(PROBE, **env)


def test_embedded_mode_when_nothing_is_configured(tmp_path):
    result = run_probe(**EMBEDDED_ENV, VAR_DIR=tmp_path / "var")
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout)
    assert loaded["mode"] == "embedded"
    assert loaded["debug"] is True
    assert loaded["engine"] == "django.db.backends.sqlite3"
    assert loaded["db_name"] == str(tmp_path / "var" / "db.sqlite3")
    assert loaded["eager"] is True
    assert loaded["email_backend"] == "mail.backends.OutboxEmailBackend"
    assert loaded["outbox"] == str(tmp_path / "var" / "outbox")
    assert loaded["site_url"] == "http://localhost:8000"


def test_embedded_mode_default_paths_live_in_var():
    result = run_probe(**EMBEDDED_ENV, VAR_DIR=None, OUTBOX_DIR=None)
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout)
    assert loaded["db_name"] == str(BASE_DIR / "var" / "db.sqlite3")
    assert loaded["outbox"] == str(BASE_DIR / "var" / "outbox")


def test_production_mode_reads_services_from_env():
    result = run_probe(
        DATABASE_URL="postgres://app:pw@db.internal:5432/paperboy",
        REDIS_URL="redis://cache.internal:6379/1",
        DJANGO_SECRET_KEY="k" * 60,
        SITE_URL="https://digest.example.org/",
        EMAIL_BACKEND="anymail.backends.postmark.EmailBackend",
        ANYMAIL_POSTMARK_SERVER_TOKEN="token-123",
        ANYMAIL_WEBHOOK_SECRET="user:pass",
    )
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout)
    assert loaded["mode"] == "production"
    assert loaded["debug"] is False
    assert loaded["engine"] == "django.db.backends.postgresql"
    assert loaded["db_name"] == "paperboy"
    assert loaded["eager"] is False
    assert loaded["broker"] == "redis://cache.internal:6379/1"
    assert loaded["cache"] == "django.core.cache.backends.redis.RedisCache"
    assert loaded["email_backend"] == "anymail.backends.postmark.EmailBackend"
    assert loaded["anymail"] == {"POSTMARK_SERVER_TOKEN": "token-123", "WEBHOOK_SECRET": "user:pass"}
    assert loaded["site_url"] == "https://digest.example.org"
    assert loaded["hsts"] >= 31536000
    assert loaded["secure_cookie"] is True


def test_production_mode_refuses_to_start_without_secret_key():
    result = run_probe(DATABASE_URL="postgres://app@db:5432/paperboy", DJANGO_SECRET_KEY=None)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "DJANGO_SECRET_KEY must be set" in result.stderr


def test_check_deploy_is_clean_with_production_env():
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=BASE_DIR,
        env=app_env(
            DATABASE_URL="postgres://app:pw@db.internal:5432/paperboy",
            REDIS_URL="redis://cache.internal:6379/0",
            DJANGO_SECRET_KEY="q8Zr-2vLmX7_pW0aT4nK9sE1bY6cH3jU5fG8dR2zQ0oV7iM4lN",
            SITE_URL="https://digest.example.org",
            EMAIL_BACKEND="anymail.backends.postmark.EmailBackend",
            ANYMAIL_POSTMARK_SERVER_TOKEN="token",
            ANYMAIL_WEBHOOK_SECRET="hook-user:hook-password",
        ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_warns_when_production_would_write_to_outbox():
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy"],
        cwd=BASE_DIR,
        env=app_env(
            DATABASE_URL="postgres://app:pw@db.internal:5432/paperboy",
            DJANGO_SECRET_KEY="q8Zr-2vLmX7_pW0aT4nK9sE1bY6cH3jU5fG8dR2zQ0oV7iM4lN",
            SITE_URL="https://digest.example.org",
            EMAIL_BACKEND=None,
        ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "paperboy.W001" in result.stdout + result.stderr
    assert "paperboy.W002" in result.stdout + result.stderr  # no webhook secret either
