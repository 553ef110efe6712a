"""docker-compose.yml and the Dockerfile: what `docker compose up` would do, checked by behaviour."""

import ipaddress
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support import BASE_DIR

COMPOSE = yaml.safe_load((BASE_DIR / "docker-compose.yml").read_text())
SERVICES: dict[str, dict] = COMPOSE["services"]
DOCKERFILE = (BASE_DIR / "Dockerfile").read_text()
APP_SERVICES = [name for name, spec in SERVICES.items() if "build" in spec]
LONG_RUNNING = [name for name, spec in SERVICES.items() if spec.get("restart") != "no"]


def argv(name: str) -> list[str]:
    command = SERVICES[name].get("command", [])
    return command if isinstance(command, list) else command.split()


def runs(name: str, *program: str) -> bool:
    """Whether the service's command starts with these words, after any `python -m`."""
    words = argv(name)
    if words[:2] == ["python", "-m"]:
        words = words[2:]
    return words[: len(program)] == list(program)


def option(words: list[str], flag: str) -> str | None:
    for index, word in enumerate(words):
        if word == flag and index + 1 < len(words):
            return words[index + 1]
        if word.startswith(f"{flag}="):
            return word.split("=", 1)[1]
    return None


def test_the_compose_file_follows_the_compose_specification():
    # Installed beside the interpreter running the tests (requirements-dev.txt).
    checker = shutil.which("check-jsonschema", path=str(Path(sys.executable).parent))
    if checker is None:
        pytest.fail("check-jsonschema is missing: make install", pytrace=False)
    result = subprocess.run(
        [checker, "--builtin-schema", "vendor.compose-spec", str(BASE_DIR / "docker-compose.yml")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_stack_has_stores_app_processes_and_a_mail_sink():
    images = {name: spec.get("image", "") for name, spec in SERVICES.items()}
    assert any(image.startswith("postgres:") for image in images.values())
    assert any(image.startswith("redis:") for image in images.values())
    assert any(image.startswith("axllent/mailpit:") for image in images.values())
    assert any(runs(name, "gunicorn", "config.wsgi:application") for name in APP_SERVICES)
    assert any(runs(name, "celery", "-A", "config", "worker") for name in APP_SERVICES)
    assert any(argv(name)[:3] == ["python", "manage.py", "migrate"] for name in APP_SERVICES)


def test_exactly_one_beat_runs_and_it_reads_the_database_schedule():
    beats = [name for name in SERVICES if runs(name, "celery", "-A", "config", "beat")]
    assert len(beats) == 1, beats
    beat = SERVICES[beats[0]]
    assert beat.get("deploy", {}).get("replicas", 1) == 1
    assert option(argv(beats[0]), "--scheduler") == "django_celery_beat.schedulers:DatabaseScheduler"
    # No other process embeds a beat (celery worker -B).
    for name in APP_SERVICES:
        assert "-B" not in argv(name) and "--beat" not in argv(name), name


@pytest.mark.parametrize("name", LONG_RUNNING)
def test_every_long_running_service_has_a_healthcheck(name):
    check = SERVICES[name].get("healthcheck")
    assert check and check.get("test") and check.get("disable") is not True, name
    assert check.get("interval") and check.get("retries", 0) >= 1


def test_the_web_healthcheck_probes_healthz():
    (web,) = [name for name in APP_SERVICES if runs(name, "gunicorn")]
    assert "/healthz" in " ".join(SERVICES[web]["healthcheck"]["test"])


def test_app_processes_wait_for_healthy_stores_and_finished_migrations():
    stores = {
        name for name, spec in SERVICES.items() if spec.get("image", "").startswith(("postgres:", "redis:"))
    }
    migrate = next(name for name in APP_SERVICES if argv(name)[1:3] == ["manage.py", "migrate"])
    for name in APP_SERVICES:
        depends = SERVICES[name].get("depends_on", {})
        for store in stores:
            assert depends.get(store, {}).get("condition") == "service_healthy", (name, store)
        if name != migrate:
            assert depends[migrate]["condition"] == "service_completed_successfully", name


def test_app_processes_share_one_configuration():
    environments = [SERVICES[name]["environment"] for name in APP_SERVICES]
    assert all(env == environments[0] for env in environments)
    env = environments[0]
    assert env["DATABASE_URL"].startswith("postgres://")
    assert env["REDIS_URL"].startswith("redis://")
    # No default secret: compose refuses to start without one.
    assert re.fullmatch(r"\$\{DJANGO_SECRET_KEY:\?.+\}", env["DJANGO_SECRET_KEY"])


def published(spec: dict) -> list[tuple[str | None, str]]:
    """(host address or None for every interface, host port) of each published port."""
    result = []
    for port in spec.get("ports", []):
        if isinstance(port, dict):
            result.append((port.get("host_ip"), str(port.get("published"))))
            continue
        parts = str(port).rsplit(":", 2)
        if len(parts) == 3:
            result.append((parts[0].strip("[]"), parts[1]))
        else:
            result.append((None, parts[0]))
    return result


def test_published_ports_listen_on_loopback_only():
    ports = {name: published(spec) for name, spec in SERVICES.items() if spec.get("ports")}
    assert ports, "nothing is published"
    for name, bindings in ports.items():
        for host, port in bindings:
            assert host is not None, f"{name} publishes {port} on every interface"
            assert ipaddress.ip_address(host).is_loopback, f"{name} publishes {port} on {host}"


def test_images_are_pinned():
    for name, spec in SERVICES.items():
        image = spec.get("image", "")
        if "build" in spec:
            continue
        repository, _, tag = image.rpartition(":")
        assert repository and tag and tag != "latest", f"{name}: {image}"
        assert re.search(r"\d", tag), f"{name}: {image} has no version"
    mailpit = next(spec["image"] for spec in SERVICES.values() if "mailpit" in spec.get("image", ""))
    assert re.fullmatch(r"axllent/mailpit:v\d+\.\d+\.\d+", mailpit)


def test_the_image_builds_on_an_exact_python_and_debian_release():
    bases = re.findall(r"^FROM\s+(\S+)", DOCKERFILE, flags=re.MULTILINE)
    assert bases, "no FROM line"
    for base in bases:
        assert re.fullmatch(r"python:3\.11\.\d+-slim-[a-z]+", base), base


def test_the_image_installs_runtime_requirements_only():
    installs = re.findall(r"pip install ([^\n&]+)", DOCKERFILE)
    assert installs, "the image installs nothing"
    files = {word for line in installs for word in line.split() if word.endswith(".txt")}
    assert files == {"requirements.txt"}
    runtime = (BASE_DIR / "requirements.txt").read_text()
    assert "-r requirements-dev.txt" not in runtime
    for tool in ("pytest", "mypy", "ruff", "hypothesis", "playwright"):
        assert not re.search(rf"^{tool}\b", runtime, flags=re.MULTILINE | re.IGNORECASE), tool


def test_the_image_collects_hashed_static_files():
    (step,) = [line for line in DOCKERFILE.splitlines() if line.startswith("RUN") and "collectstatic" in line]
    assert "STATIC_HASHED=true" in step


def test_named_volumes_are_declared():
    used = {
        volume.split(":", 1)[0]
        for spec in SERVICES.values()
        for volume in spec.get("volumes", [])
        if not volume.startswith((".", "/"))
    }
    assert used <= set(COMPOSE.get("volumes", {}))


def test_env_example_documents_the_secret_compose_requires():
    assert re.search(r"^DJANGO_SECRET_KEY=", (BASE_DIR / ".env.example").read_text(), flags=re.MULTILINE)
