"""The suite's own guarantees: service tests are marked, passwords hash fast."""

import subprocess
import sys

from django.contrib.auth.hashers import get_hasher, make_password

from tests.support import BASE_DIR, app_env

NEEDS_SERVICES = [
    "tests/config/test_celery_worker.py::test_real_worker_runs_task_and_returns_result",
    "tests/digest/test_nightly_worker.py::test_real_worker_runs_the_whole_night",
    "tests/digest/test_health.py::test_healthz_ok_with_real_redis",
    "tests/subscribers/test_tasks_worker.py",
]


def collected(*args: str) -> set[str]:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *args],
        cwd=BASE_DIR,
        env=app_env(DATABASE_URL=None, REDIS_URL=None, REQUIRE_SERVICES=None),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode in (0, 5), result.stdout + result.stderr  # 5: everything deselected
    return {line.strip() for line in result.stdout.splitlines() if "::" in line}


def test_tests_that_use_services_carry_the_services_marker():
    files = sorted({path.split("::")[0] for path in NEEDS_SERVICES})
    everything = collected(*files)
    without_services = collected("-m", "not services", *files)
    for test in NEEDS_SERVICES:
        matching = {nodeid for nodeid in everything if nodeid.startswith(test)}
        assert matching, f"{test} was not collected"
        assert not matching & without_services, f"{test} is not marked services"
    # Tests that need no service still run under -m "not services".
    assert any("test_healthz_ok_with_database_only" in nodeid for nodeid in without_services)


def test_passwords_use_the_fast_hasher_in_tests():
    assert get_hasher().algorithm == "md5"
    assert make_password("pw").startswith("md5$")
