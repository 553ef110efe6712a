"""Static files: content-hashed names in production, plain names in the embedded mode."""

import json
import re

from tests.support import run_python

PROBE = """
import json, django
django.setup()
from django.conf import settings
from django.core.management import call_command
from django.test import Client
if settings.STATIC_HASHED:
    call_command("collectstatic", interactive=False, verbosity=0)
client = Client()
icon = client.get("/favicon.ico")
served = client.get(icon["Location"])
print(json.dumps({
    "backend": settings.STORAGES["staticfiles"]["BACKEND"],
    "icon_url": icon["Location"],
    "status": served.status_code,
    "cache_control": served.get("Cache-Control", ""),
}))
"""


def run_probe(tmp_path, **env) -> dict:
    result = run_python(
        PROBE,
        timeout=120,
        STATIC_ROOT=tmp_path / "static",
        VAR_DIR=tmp_path / "var",
        ALLOWED_HOSTS="testserver",
        DJANGO_DEBUG="false",
        **env,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def test_production_serves_hashed_names_that_browsers_may_cache_for_ever(tmp_path):
    loaded = run_probe(
        tmp_path,
        DATABASE_URL="postgres://app:pw@127.0.0.1:1/unused",  # production settings; never connected
        REDIS_URL=None,
        DJANGO_SECRET_KEY="static-probe-key",
    )
    assert loaded["backend"] == "whitenoise.storage.CompressedManifestStaticFilesStorage"
    assert re.fullmatch(r"/static/favicon\.[0-9a-f]{12}\.svg", loaded["icon_url"]), loaded
    assert loaded["status"] == 200
    assert "immutable" in loaded["cache_control"]
    assert json.loads((tmp_path / "static" / "staticfiles.json").read_text())["paths"]["favicon.svg"]


def test_embedded_mode_needs_no_collectstatic(tmp_path):
    loaded = run_probe(tmp_path, DATABASE_URL=None, REDIS_URL=None, STATIC_HASHED=None)
    assert loaded["backend"] == "whitenoise.storage.CompressedStaticFilesStorage"
    assert loaded["icon_url"] == "/static/favicon.svg"
    assert not (tmp_path / "static").exists()
