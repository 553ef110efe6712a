import json
import subprocess
import sys

import pytest

from tests.support import BASE_DIR, app_env

pytestmark = pytest.mark.django_db


def test_healthz_ok_with_database_only(client, settings):
    settings.REDIS_URL = ""
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "failing": [], "services": {"database": "ok"}}


def test_healthz_ok_with_real_redis(client, settings, redis_url):
    settings.REDIS_URL = redis_url
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["services"] == {"database": "ok", "redis": "ok"}


def test_healthz_503_names_redis_when_it_is_down(client, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "error"
    assert body["failing"] == ["redis"]
    assert body["services"]["database"] == "ok"
    assert body["services"]["redis"].startswith("error: ConnectionError")


def test_healthz_is_not_cached(client):
    response = client.get("/healthz")
    assert "no-cache" in response["Cache-Control"]


def test_healthz_503_names_database_when_it_is_down():
    """A separate process whose DATABASE_URL points at a port where no server listens."""
    probe = (
        "import django, json; django.setup(); from django.test import Client; "
        "r = Client().get('/healthz'); print(json.dumps({'status': r.status_code, 'body': r.json()}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=BASE_DIR,
        env=app_env(
            DJANGO_SETTINGS_MODULE="config.settings",
            DATABASE_URL="postgres://postgres@127.0.0.1:1/nowhere",
            REDIS_URL=None,
            DJANGO_SECRET_KEY="probe-key",
            ALLOWED_HOSTS="testserver",
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["status"] == 503
    assert outcome["body"]["failing"] == ["database"]
    assert "OperationalError" in outcome["body"]["services"]["database"]
