"""Helpers shared by tests: child-process environments, polling."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parent.parent


def app_env(**overrides) -> dict:
    """Environment for a child process of this project (worker, server, settings probe)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "ANYMAIL_"))}
    env["DJANGO_READ_DOT_ENV"] = "false"
    env["PYTHONPATH"] = str(BASE_DIR)
    env.setdefault("DJANGO_SECRET_KEY", os.environ.get("DJANGO_SECRET_KEY", "child-process-test-key"))
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = str(value)
    return env


def run_python(code: str, *, timeout: float = 60, check: bool = False, **env) -> subprocess.CompletedProcess:
    """`code` in a fresh Python process of this project, on config.settings with `env` on top
    (a None value removes the variable)."""
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=BASE_DIR,
        env=app_env(DJANGO_SETTINGS_MODULE="config.settings", **env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=check,
    )


def test_database_url() -> str:
    """A URL for the database the test run is using (pytest-django's test_ copy)."""
    from django.db import connection

    db = connection.settings_dict
    user = db.get("USER") or "postgres"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    return f"postgres://{user}{password}@{host}:{port}/{db['NAME']}"


test_database_url.__test__ = False  # a helper, not a test


class WorkerProcess:
    def __init__(self, process: subprocess.Popen, queue: str, log_path: Path):
        self.process = process
        self.queue = queue
        self.log_path = log_path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 20):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout)


def wait_for(predicate, *, timeout: float, interval: float = 0.1, message: str = "condition"):
    """Poll until predicate() is truthy; fail with a clear message otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {message}")
