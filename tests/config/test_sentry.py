"""Sentry starts only with SENTRY_DSN; events go to the DSN's host (here a loopback server)."""

import gzip
import json
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.support import run_python

PROBE = """
import json, django
django.setup()
import sentry_sdk
from django.conf import settings
client = sentry_sdk.get_client()
options = client.options if client.is_active() else {}
print(json.dumps({
    "enabled": settings.SENTRY_ENABLED,
    "active": client.is_active(),
    "environment": options.get("environment"),
    "traces_sample_rate": options.get("traces_sample_rate"),
    "send_default_pii": options.get("send_default_pii"),
    "integrations": sorted(getattr(client, "integrations", {}) or {}),
}))
if client.is_active():
    sentry_sdk.capture_message("probe from the test suite")
    sentry_sdk.flush(timeout=10)
"""


class Collector(BaseHTTPRequestHandler):
    received: list[bytes] = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        encoding = self.headers.get("Content-Encoding", "")
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
        elif encoding == "br":
            pytest.fail("the test server cannot read brotli")
        type(self).received.append(body)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


@pytest.fixture
def sentry_server():
    Collector.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, Collector.received
    server.shutdown()
    server.server_close()


def probe(tmp_path, **env) -> dict:
    result = run_python(
        PROBE,
        DATABASE_URL=None,
        REDIS_URL=None,
        VAR_DIR=tmp_path,
        **{"SENTRY_DSN": None, "SENTRY_ENVIRONMENT": None, "SENTRY_TRACES_SAMPLE_RATE": None, **env},
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[0])


def test_no_dsn_no_sentry(tmp_path, sentry_server):
    _, received = sentry_server
    loaded = probe(tmp_path)
    assert (loaded["enabled"], loaded["active"]) == (False, False)
    assert received == []


def test_with_a_dsn_errors_of_django_and_celery_are_reported(tmp_path, sentry_server):
    server, received = sentry_server
    port = server.server_address[1]
    loaded = probe(
        tmp_path,
        SENTRY_DSN=f"http://publickey@127.0.0.1:{port}/42",
        SENTRY_ENVIRONMENT="staging",
        SENTRY_TRACES_SAMPLE_RATE="0.25",
    )
    assert (loaded["enabled"], loaded["active"]) == (True, True)
    assert loaded["environment"] == "staging"
    assert loaded["traces_sample_rate"] == 0.25
    assert loaded["send_default_pii"] is False
    assert {"django", "celery"} <= set(loaded["integrations"])

    # The event reached the DSN's host: our loopback server, nothing else.
    assert received, "no event arrived"
    envelope = b"\n".join(received).decode(errors="replace")
    assert "probe from the test suite" in envelope
    assert '"environment":"staging"' in envelope.replace(" ", "")


def test_environment_defaults_to_the_deployment_mode(tmp_path, sentry_server):
    server, _ = sentry_server
    loaded = probe(tmp_path, SENTRY_DSN=f"http://publickey@127.0.0.1:{server.server_address[1]}/1")
    assert loaded["environment"] == "embedded"
    assert loaded["traces_sample_rate"] == 0.0


def test_a_sample_rate_out_of_range_stops_startup(tmp_path):
    result = run_python(
        "import django; django.setup()",
        DATABASE_URL=None,
        VAR_DIR=tmp_path,
        SENTRY_DSN="http://publickey@127.0.0.1:9/1",
        SENTRY_TRACES_SAMPLE_RATE="5",
    )
    assert result.returncode != 0
    assert "SENTRY_TRACES_SAMPLE_RATE must be between 0 and 1" in result.stderr
