"""Shared fixtures: real services, a real Celery worker, isolated outbox."""

import os
import subprocess
import uuid

import pytest

from bench.common import celery_worker_command
from tests.support import BASE_DIR, WorkerProcess, app_env, test_database_url

REQUIRE_SERVICES = os.environ.get("REQUIRE_SERVICES") == "1"


def service_missing(reason: str):
    """Skip locally, but fail loudly when the run promised real services."""
    if REQUIRE_SERVICES:
        pytest.fail(f"{reason} (REQUIRE_SERVICES=1)", pytrace=False)
    pytest.skip(reason)


# Fixtures that reach a real service; a test using any of them, directly or through
# another fixture, is marked `services` (so `-m "not services"` runs without them).
SERVICE_FIXTURES = frozenset({"redis_url", "postgres_required", "celery_worker_factory"})
# Tests create users and log in all the time; the production hasher is slow on purpose.
FAST_PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
HASHED_STATIC_STORAGE = "whitenoise.storage.CompressedManifestStaticFilesStorage"


def pytest_collection_modifyitems(config, items):
    for item in items:
        if SERVICE_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.services)


@pytest.fixture(scope="session", autouse=True)
def fast_password_hashing():
    from django.test import override_settings

    with override_settings(PASSWORD_HASHERS=FAST_PASSWORD_HASHERS):
        yield


def pytest_sessionstart(session):
    if REQUIRE_SERVICES:
        from django.conf import settings

        engine = settings.DATABASES["default"]["ENGINE"]
        if "postgresql" not in engine or not settings.REDIS_URL:
            raise pytest.UsageError(
                f"REQUIRE_SERVICES=1 but the suite is not on PostgreSQL and Redis "
                f"(engine={engine}, REDIS_URL={settings.REDIS_URL!r}); set DATABASE_URL and REDIS_URL."
            )


@pytest.fixture(scope="session", autouse=True)
def collected_static(tmp_path_factory):
    """Production settings serve content-hashed static files, which need the
    manifest collectstatic writes. Collect them once per session into a folder
    of its own, used by this process when it runs the production settings, and
    by any production-mode child a test starts (through STATIC_ROOT), whatever
    mode the suite itself runs in. Returns the folder when this process serves it."""
    from django.conf import settings
    from django.core.management import call_command
    from django.test import override_settings

    root = tmp_path_factory.mktemp("staticfiles")
    hashed = {**settings.STORAGES, "staticfiles": {"BACKEND": HASHED_STATIC_STORAGE}}
    with override_settings(STATIC_ROOT=root, STORAGES=hashed):
        call_command("collectstatic", interactive=False, verbosity=0)
    previous = os.environ.get("STATIC_ROOT")
    os.environ["STATIC_ROOT"] = str(root)
    if settings.STATIC_HASHED:
        with override_settings(STATIC_ROOT=root):
            yield root
    else:
        yield None
    if previous is None:
        os.environ.pop("STATIC_ROOT", None)
    else:
        os.environ["STATIC_ROOT"] = previous


@pytest.fixture(scope="session")
def live_server(request, collected_static):
    """pytest-django's live server, serving static files the way production does
    when they are hashed: from the collected STATIC_ROOT, not from the source
    folders, which hold no hashed names."""
    from django.test.testcases import _StaticFilesHandler
    from pytest_django.live_server_helper import LiveServer

    addr = (
        request.config.getvalue("liveserver") or os.getenv("DJANGO_LIVE_TEST_SERVER_ADDRESS") or "localhost"
    )
    server = LiveServer(addr, start=False)
    if collected_static is not None:
        server.thread.static_handler = _StaticFilesHandler
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_url() -> str:
    url = os.environ.get("REDIS_URL", "")
    if not url:
        service_missing("REDIS_URL is not set")
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis at {url} is configured but unreachable: {exc}", pytrace=False)
    return url


@pytest.fixture(scope="session")
def postgres_required():
    from django.conf import settings

    if "postgresql" not in settings.DATABASES["default"]["ENGINE"]:
        service_missing("DATABASE_URL does not point at PostgreSQL")


@pytest.fixture(autouse=True)
def isolated_outbox(settings, tmp_path):
    """Each test gets its own outbox folder, so tests never see each other's mail."""
    settings.OUTBOX_DIR = tmp_path / "outbox"
    return settings.OUTBOX_DIR


@pytest.fixture(autouse=True)
def eager_celery():
    """Tasks run in-process in tests unless a test starts a real worker."""
    from config.celery_app import app

    previous = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield app
    app.conf.task_always_eager = previous


@pytest.fixture
def celery_worker_factory(redis_url, tmp_path, eager_celery):
    """Start real `celery worker` processes on the real Redis broker.

    The worker talks to the same database as the test (the test_ copy), so use it
    with `transactional_db` when the worker must see rows the test wrote.
    Each worker listens on its own queue unless one is given, so stray workers
    elsewhere on the machine never steal the test's tasks.
    """
    eager_celery.conf.task_always_eager = False
    started: list[WorkerProcess] = []

    def start(
        *, queue: str | None = None, concurrency: int = 1, extra_env: dict | None = None
    ) -> WorkerProcess:
        from django.conf import settings

        queue = queue or f"test-{uuid.uuid4().hex[:10]}"
        overrides = {
            "REDIS_URL": redis_url,
            "OUTBOX_DIR": settings.OUTBOX_DIR,
            # Tasks the worker queues itself stay on its own queue.
            "CELERY_TASK_DEFAULT_QUEUE": queue,
        }
        if "postgresql" in settings.DATABASES["default"]["ENGINE"]:
            overrides["DATABASE_URL"] = test_database_url()
        overrides.update(extra_env or {})
        log_path = tmp_path / f"worker-{len(started)}.log"
        command = celery_worker_command(
            queue=queue,
            hostname=f"{queue}-{len(started)}@%h",
            pool="prefork" if concurrency > 1 else "solo",
            concurrency=concurrency,
        )
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                command, cwd=BASE_DIR, env=app_env(**overrides), stdout=log, stderr=subprocess.STDOUT
            )
        worker = WorkerProcess(process, queue, log_path)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture(autouse=True)
def clean_send_journal():
    """The send journal and the ESP rate limit live in Redis and outlive a test's
    database rollback; the process keeps one limiter per setting."""
    from mail import ratelimit

    ratelimit._shared.clear()
    url = os.environ.get("REDIS_URL")
    if not url:
        yield
        ratelimit._shared.clear()
        return
    import redis

    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter("paperboy:sent:*")) + list(client.scan_iter("paperboy:esp:*"))
    except redis.RedisError:
        keys = []
    if keys:
        client.delete(*keys)
    yield
    ratelimit._shared.clear()
    client.close()
