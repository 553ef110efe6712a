"""docker-compose.yml is what a user can `docker compose up`: checked structurally."""

from pathlib import Path

import pytest
import yaml

from tests.support import BASE_DIR

COMPOSE = yaml.safe_load((BASE_DIR / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
APP_SERVICES = ["web", "worker", "beat", "migrate"]


def command_of(name: str) -> str:
    command = SERVICES[name]["command"]
    return " ".join(command) if isinstance(command, list) else command


def test_full_stack_services_are_defined():
    assert {"postgres", "redis", "web", "worker", "beat", "mailpit"} <= set(SERVICES)


@pytest.mark.parametrize("name", ["postgres", "redis", "web", "worker", "beat", "mailpit"])
def test_every_long_running_service_has_a_healthcheck(name):
    check = SERVICES[name]["healthcheck"]
    assert check["test"], name
    assert check["interval"] and check["retries"] >= 1


def test_commands_run_the_right_programs():
    assert command_of("web").startswith("gunicorn config.wsgi:application")
    assert "0.0.0.0:8000" in command_of("web")
    assert command_of("worker").startswith("celery -A config worker")
    assert command_of("beat").startswith("celery -A config beat")
    assert command_of("migrate") == "python manage.py migrate --noinput"


def test_exactly_one_beat_runs():
    beat_services = [
        name for name, spec in SERVICES.items() if "command" in spec and " beat" in command_of(name)
    ]
    assert beat_services == ["beat"]
    assert SERVICES["beat"].get("deploy", {}).get("replicas", 1) == 1


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_services_share_env_and_wait_for_healthy_stores(name):
    service = SERVICES[name]
    assert service["build"] == "."
    assert service["env_file"] == [{"path": ".env", "required": False}]
    env = service["environment"]
    assert env["DATABASE_URL"].startswith("postgres://") and "@postgres:5432/" in env["DATABASE_URL"]
    assert env["REDIS_URL"] == "redis://redis:6379/0"
    assert env["DJANGO_SECRET_KEY"].startswith("${DJANGO_SECRET_KEY:?")
    assert service["depends_on"]["redis"]["condition"] == "service_healthy"


@pytest.mark.parametrize("name", ["web", "worker", "beat"])
def test_app_services_start_after_migrations(name):
    assert SERVICES[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_mail_goes_to_mailpit_by_default():
    env = SERVICES["web"]["environment"]
    assert env["EMAIL_HOST"] == "${EMAIL_HOST:-mailpit}"
    assert env["EMAIL_PORT"] == "${EMAIL_PORT:-1025}"
    assert "8025:8025" in SERVICES["mailpit"]["ports"]


def test_web_healthcheck_probes_healthz():
    assert "/healthz" in " ".join(SERVICES["web"]["healthcheck"]["test"])


def test_named_volumes_are_declared():
    used = set()
    for service in SERVICES.values():
        for volume in service.get("volumes", []):
            used.add(volume.split(":", 1)[0])
    assert used <= set(COMPOSE["volumes"])


def test_dockerfile_and_env_example_exist_for_compose():
    dockerfile = (BASE_DIR / "Dockerfile").read_text()
    assert "FROM python:3.11" in dockerfile
    assert "requirements.txt" in dockerfile
    env_example = Path(BASE_DIR / ".env.example").read_text()
    assert "DJANGO_SECRET_KEY=" in env_example
