"""The public site under outages, through gunicorn over real HTTP: PostgreSQL down gives a
branded 500 page and a /healthz that names the service but not where it lives; Redis down
(broker, cache and rate limit) still takes signups, confirmations and preference changes,
and every email they call for goes out once Redis is back."""

import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlencode

import pytest

from subscribers.models import OutgoingEmail, Subscriber
from subscribers.tasks import drain_outgoing_email
from subscribers.tokens import make_confirm_token, make_manage_token
from tests.faults.conftest import _free_port
from tests.subscribers.factories import SubscriberFactory
from tests.support import BASE_DIR, app_env, test_database_url, wait_for

SECRET = "outage-test-secret-key-0123456789abcdef0123456789"
CSRF = "outageoutageoutageoutageoutage01"
BRANDED_500 = "Something went wrong on our side"


class Site:
    def __init__(self, tmp_path: Path, **env):
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = tmp_path / f"gunicorn-{self.port}.log"
        environment = app_env(
            DJANGO_SECRET_KEY=SECRET,
            SITE_URL=self.base,
            ALLOWED_HOSTS="127.0.0.1",
            DJANGO_DEBUG="false",
            SIGNUP_RATE_LIMIT="20/h",
            **env,
        )
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [
                    str(Path(sys.executable).with_name("gunicorn")),
                    "config.wsgi:application",
                    "--bind",
                    f"127.0.0.1:{self.port}",
                    "--workers",
                    "1",
                    "--timeout",
                    "60",
                ],
                cwd=BASE_DIR,
                env=environment,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

        def listening():
            with socket.socket() as probe:
                return probe.connect_ex(("127.0.0.1", self.port)) == 0

        wait_for(listening, timeout=30, message="gunicorn")

    def request(self, path: str, form: dict | None = None, headers: dict | None = None) -> tuple[int, str]:
        data = (
            urlencode({**form, "csrfmiddlewaretoken": CSRF}, doseq=True).encode()
            if form is not None
            else None
        )
        request = urllib.request.Request(self.base + path, data=data, headers={"Cookie": f"csrftoken={CSRF}"})
        for key, value in (headers or {}).items():
            request.add_header(key, value)
        opener = urllib.request.build_opener(NoRedirect)
        started = time.monotonic()
        try:
            with opener.open(request, timeout=30) as response:
                status, body = response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            status, body = error.code, error.read().decode()
        self.last_seconds = time.monotonic() - started
        return status, body

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=20)


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


@pytest.fixture
def start_site(tmp_path):
    sites: list[Site] = []

    def start(**env) -> Site:
        site = Site(tmp_path, **env)
        sites.append(site)
        return site

    yield start
    for site in sites:
        site.stop()


SIGNUP = {"email": "ada@example.org", "topics": ["reasoning"], "frequency": "daily", "weekday": "0"}


def test_postgresql_down_gives_branded_500s_and_a_discreet_healthz(start_site, settings):
    dead = _free_port()
    site = start_site(DATABASE_URL=f"postgres://postgres@127.0.0.1:{dead}/nowhere", REDIS_URL=None)
    settings.SECRET_KEY = SECRET
    reader = SubscriberFactory.build(pk=42, token_version=1)
    manage = f"/manage/{make_manage_token(42, 1)}/"
    pages = {
        "front page": ("/", None),
        "signup": ("/", SIGNUP),
        "confirmation": (f"/confirm/{make_confirm_token(reader)}/", None),
        "confirming": (f"/confirm/{make_confirm_token(reader)}/", {}),
        "preference centre": (manage, None),
        "saving preferences": (manage, {"action": "save", "topics": ["agents"], "frequency": "daily"}),
    }
    for name, (path, form) in pages.items():
        status, body = site.request(path, form)
        assert status == 500, (name, status, body[:300])
        assert BRANDED_500 in body, name
        assert "Traceback" not in body and str(dead) not in body and "nowhere" not in body, name
    assert 'href="/static/css/site.css"' in body  # styled like the site, from static files only

    status, body = site.request("/healthz")
    assert status == 503
    assert (
        body.replace(" ", "") == '{"status":"error","failing":["database"],"services":{"database":"error"}}'
    )
    assert str(dead) not in body
    status, detailed = site.request("/healthz", headers={"X-Healthz-Token": "wrong"})
    assert "OperationalError" not in detailed


def test_postgresql_down_healthz_details_with_the_token(start_site):
    dead = _free_port()
    site = start_site(
        DATABASE_URL=f"postgres://postgres@127.0.0.1:{dead}/nowhere",
        REDIS_URL=None,
        HEALTHZ_TOKEN="ops-token",
    )
    status, body = site.request("/healthz", headers={"X-Healthz-Token": "ops-token"})
    assert status == 503 and "OperationalError" in body


@pytest.mark.services
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_redis_down_still_takes_signups_confirmations_and_preferences(
    start_site, private_redis, celery_worker_factory, settings, isolated_outbox
):
    settings.SECRET_KEY = SECRET
    pending = SubscriberFactory(email="pending@example.org", status=Subscriber.Status.PENDING)
    active = SubscriberFactory(email="active@example.org", status=Subscriber.Status.ACTIVE, topics=["agents"])
    site = start_site(
        DATABASE_URL=test_database_url(), REDIS_URL=private_redis.url, OUTBOX_DIR=isolated_outbox
    )
    assert site.request("/healthz")[0] == 200
    private_redis.stop()

    status, body = site.request("/healthz")
    assert status == 503 and '"failing": ["redis"]' in body

    for n in range(3):
        status, _body = site.request("/", {**SIGNUP, "email": f"reader{n}@example.org"})
        assert status == 302, _body[:300]
    confirm = f"/confirm/{make_confirm_token(pending)}/"
    assert site.request(confirm)[0] == 200
    assert site.request(confirm, {})[0] == 200
    manage = f"/manage/{make_manage_token(active.pk, active.token_version)}/"
    assert site.request(manage)[0] == 200
    saved = site.request(
        manage,
        {
            "action": "save",
            "topics": ["reasoning"],
            "frequency": "weekly",
            "weekday": "2",
            "digest_size": "8",
        },
    )
    assert saved[0] == 302
    assert site.request(manage, {"action": "data_link"})[0] == 302

    pending.refresh_from_db()
    active.refresh_from_db()
    assert pending.status == Subscriber.Status.ACTIVE
    assert active.frequency == "weekly"
    waiting = OutgoingEmail.objects.filter(sent_at__isnull=True)
    assert sorted(waiting.values_list("kind", flat=True)) == ["data_link", "signup", "signup", "signup"]
    assert "could not queue the outgoing-email task" in site.log.read_text()
    assert "signup rate limit not checked" in site.log.read_text()

    # A broker is back: the periodic drain (here queued by hand) on a real worker sends
    # everything that waited, once.
    worker = celery_worker_factory(extra_env={"SITE_URL": site.base})
    result = drain_outgoing_email.apply_async(queue=worker.queue, ignore_result=False)
    try:
        assert result.get(timeout=60) == 4
    except Exception:
        pytest.fail(f"worker log:\n{worker.log()}")
    recipients = sorted(
        re.search(r"^To: (.+)$", path.read_text(), re.M).group(1) for path in isolated_outbox.glob("*.eml")
    )
    assert recipients == [
        "active@example.org",
        "reader0@example.org",
        "reader1@example.org",
        "reader2@example.org",
    ]
    assert not OutgoingEmail.objects.filter(sent_at__isnull=True).exists()
