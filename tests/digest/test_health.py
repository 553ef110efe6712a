import json

import pytest

from tests.support import run_python

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
    assert body["services"] == {"database": "ok", "redis": "error"}
    # Which service failed, never where it lives.
    assert "127.0.0.1" not in response.content.decode() and ":1" not in response.content.decode()


@pytest.mark.parametrize("how", ["header", "query"])
def test_healthz_details_only_with_the_token(client, settings, how):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    settings.HEALTHZ_TOKEN = "ops-secret-token"
    for wrong in ("", "ops-secret-tokeN"):
        kwargs = {"HTTP_X_HEALTHZ_TOKEN": wrong} if how == "header" else {"data": {"token": wrong}}
        assert client.get("/healthz", **kwargs).json()["services"]["redis"] == "error"
    kwargs = (
        {"HTTP_X_HEALTHZ_TOKEN": "ops-secret-token"}
        if how == "header"
        else {"data": {"token": "ops-secret-token"}}
    )
    response = client.get("/healthz", **kwargs)
    assert response.status_code == 503
    assert response.json()["services"]["redis"].startswith("error: ConnectionError")


def test_healthz_never_shows_details_without_a_configured_token(client, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    settings.HEALTHZ_TOKEN = ""
    assert client.get("/healthz", HTTP_X_HEALTHZ_TOKEN="").json()["services"]["redis"] == "error"


def test_healthz_is_not_cached(client):
    response = client.get("/healthz")
    assert "no-cache" in response["Cache-Control"]


def test_healthz_503_names_database_when_it_is_down():
    """A separate process whose DATABASE_URL points at a port where no server listens."""
    probe = (
        "import django, json; django.setup(); from django.test import Client; "
        "r = Client().get('/healthz'); print(json.dumps({'status': r.status_code, 'body': r.json()}))"
    )
    result = run_python(
        probe,
        DATABASE_URL="postgres://postgres@127.0.0.1:1/nowhere",
        REDIS_URL=None,
        DJANGO_SECRET_KEY="probe-key",
        ALLOWED_HOSTS="testserver",
    )
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["status"] == 503
    assert outcome["body"]["failing"] == ["database"]
    assert outcome["body"]["services"] == {"database": "error"}
    assert "nowhere" not in result.stdout and "127.0.0.1" not in result.stdout
