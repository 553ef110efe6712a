"""What the benchmarks share: their own database and Redis DB, Django setup, child processes.

A benchmark never touches the databases or Redis DBs the test suite uses: it
creates (and by default drops) its own PostgreSQL database and uses its own
Redis DB number, queue and edition.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    import psycopg

T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEFAULT_POSTGRES = "postgres://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS = "redis://127.0.0.1:6379/5"
BENCH_SECRET_KEY = "bench-only-secret-key-7d1f0c2b9e8a4f6d5c3b2a1908f7e6d5"  # noqa: S105 (throwaway databases)
SITE_URL = "https://digest.example.org"


def database_url(server_url: str, name: str) -> str:
    parts = urlsplit(server_url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


def _admin_connect(server_url: str) -> psycopg.Connection[Any]:
    import psycopg

    parts = urlsplit(server_url)
    return psycopg.connect(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 5432,
        user=parts.username or "postgres",
        password=parts.password or None,
        dbname=(parts.path or "/postgres").lstrip("/") or "postgres",
        autocommit=True,
    )


def create_database(server_url: str, name: str) -> None:
    """Drop and create a scratch database; the name must look like a benchmark's."""
    if not name.replace("_", "").isalnum() or not name.startswith("bench"):
        raise SystemExit(f"refusing to recreate database {name!r}: bench databases start with 'bench'")
    with _admin_connect(server_url) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(server_url: str, name: str) -> None:
    if not name.startswith("bench"):
        return
    with _admin_connect(server_url) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def release_database(server_url: str, name: str, *, keep: bool = False) -> None:
    """Close this process's database connections, then drop the scratch database unless ``keep``."""
    from django.conf import settings

    if settings.configured:
        from django.db import connections

        connections.close_all()
    if not keep:
        drop_database(server_url, name)


@contextmanager
def bench_database(
    server_url: str, name: str, *, keep: bool = False, **env: object
) -> Iterator[dict[str, str]]:
    """Django set up in this process on a fresh, migrated scratch database, dropped afterwards
    unless ``keep``. ``env`` adds to the benchmark's environment, which is yielded."""
    create_database(server_url, name)
    try:
        environment = app_environment(DATABASE_URL=database_url(server_url, name), **env)
        setup_django(environment)
        migrate()
        yield environment
    finally:
        release_database(server_url, name, keep=keep)


def print_result(result: dict[str, Any]) -> dict[str, Any]:
    """Print a benchmark's numbers as one line of JSON, and return them."""
    print(json.dumps(result), flush=True)
    return result


def app_environment(**overrides: object) -> dict[str, str]:
    """Environment for this process and the servers and workers it starts."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "ANYMAIL_"))}
    env.update(
        {
            "DJANGO_READ_DOT_ENV": "false",
            "DJANGO_SECRET_KEY": BENCH_SECRET_KEY,
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "PYTHONPATH": str(ROOT),
            "SITE_URL": SITE_URL,
            "LOG_LEVEL": "WARNING",
        }
    )
    env.update({key: str(value) for key, value in overrides.items() if value is not None})
    return env


def setup_django(env: dict[str, str]) -> None:
    """Configure Django in this process with the benchmark's environment."""
    for key in [key for key in os.environ if key.startswith(("DJANGO_", "ANYMAIL_"))]:
        del os.environ[key]
    os.environ.update(env)
    import django

    django.setup()


def migrate() -> None:
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def http_json(url: str, *, method: str = "GET", timeout: float = 30) -> object:
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)  # noqa: S310
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (loopback http only)
        return json.loads(response.read())


def wait_until(predicate: Callable[[], T | None], *, timeout: float, what: str, interval: float = 0.05) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise SystemExit(f"timed out after {timeout}s waiting for {what}")


class FakeESPProcess:
    """tests/fake_esp.py in its own process, counting without keeping bodies."""

    def __init__(self, env: dict[str, str], *, threads: int = 0, latency_ms: float = 0.0) -> None:
        self.port = free_port()
        command = [sys.executable, "-m", "tests.fake_esp", "--port", str(self.port), "--no-bodies"]
        if latency_ms:
            command += ["--latency-ms", str(latency_ms)]
        self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{self.port}/"

        def up() -> object:
            try:
                return http_json(self.url + "_stats", timeout=1)
            except OSError:
                return None

        wait_until(up, timeout=20, what="the fake ESP")

    def stats(self) -> dict[str, Any]:
        return cast(dict[str, Any], http_json(self.url + "_stats"))

    def recipients(self) -> dict[str, int]:
        return cast(dict[str, int], http_json(self.url + "_recipients", timeout=120))

    def reset(self) -> None:
        http_json(self.url + "_reset", method="POST")

    def stop(self) -> None:
        stop_process(self.process)


def stop_process(process: subprocess.Popen[bytes], timeout: float = 20) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout)


def peak_rss_mb(pid: int) -> float | None:
    """The process's peak resident set (VmHWM) in MB, read from /proc."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return None


def machine() -> dict[str, object]:
    """What the numbers were measured on."""
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_mb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_mb = int(line.split()[1]) // 1024
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "memory_mb": memory_mb,
        "python": sys.version.split()[0],
        "reference_ms": reference_ms(),
    }


def _reference_work() -> int:
    """A fixed piece of pure-Python work of the kinds a sending worker does most
    (dict lookups, string building, sorting tuples, small allocations)."""
    words = {number: f"w{number}" for number in range(1000)}
    total = 0
    for round_ in range(40):
        parts = [words[(number * 7 + round_) % 1000] for number in range(1000)]
        text = " ".join(parts)
        total += len(text.replace("w1", "x"))
        keyed = sorted((len(part), -number, part) for number, part in enumerate(parts))
        total += keyed[0][0]
    return total


def reference_ms(repeats: int = 5) -> float:
    """How long this machine takes for `_reference_work`, best of `repeats`, in ms.

    Machines of the same kind differ (and drift) in speed; a run's numbers are
    comparable with another machine's in proportion to this."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        _reference_work()
        best = min(best, time.perf_counter() - started)
    return round(best * 1000, 1)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pids_named(*names: str) -> list[int]:
    """Processes whose command name is one of `names` (PostgreSQL backends, redis-server)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() in names:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


class CPUMeter:
    """CPU seconds used between start() and stop() by groups of processes.

    Each group is a function returning its pids, asked again at the end, so
    processes started in between (a new PostgreSQL backend) count in full.
    A process that exits in between is not counted."""

    def __init__(self, groups: dict[str, Callable[[], list[int]]]):
        self.groups = groups
        self.before: dict[int, float] = {}

    def start(self) -> None:
        self.before = {pid: cpu_seconds(pid) for find in self.groups.values() for pid in find()}

    def stop(self) -> dict[str, float]:
        used = {}
        for name, find in self.groups.items():
            used[name] = round(
                sum(max(0.0, cpu_seconds(pid) - self.before.get(pid, 0.0)) for pid in find()), 1
            )
        return used


def celery_worker_command(
    *,
    queue: str,
    hostname: str,
    pool: str = "solo",
    concurrency: int = 1,
    loglevel: str = "INFO",
    extra: tuple[str, ...] = (),
) -> list[str]:
    """The `celery worker` command line of a worker that takes only `queue`, for
    benchmarks and tests: no gossip or mingle, so it starts at once."""
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "config",
        "worker",
        "--loglevel",
        loglevel,
        "--pool",
        pool,
        "--concurrency",
        str(concurrency),
        "--queues",
        queue,
        "--hostname",
        hostname,
        "--without-gossip",
        "--without-mingle",
        *extra,
    ]
