"""What the fault tests share: a slow fake ESP, a Redis of their own, worker settings,
and the one invariant every fault must leave intact."""

import shutil
import socket
import subprocess
import threading
from datetime import date

import pytest

from digest.models import Delivery, DigestRun
from tests.conftest import service_missing
from tests.digest.builders import make_paper, make_reader
from tests.fake_esp import FakeESP
from tests.support import wait_for

SITE_URL = "https://digest.example.org"


def on_real_services(*, timeout: int = 150) -> list[pytest.MarkDecorator]:
    """The marks of a fault test on the real PostgreSQL and Redis: committed rows, so workers
    and the test see each other's writes, and the migrations' seed data back after each test."""
    return [
        pytest.mark.services,
        pytest.mark.timeout(timeout),
        pytest.mark.django_db(transaction=True, serialized_rollback=True),
    ]


def esp_env(esp: FakeESP, **extra) -> dict:
    """Worker settings: anymail's Postmark backend pointed at the fake ESP, short waits."""
    env = {
        "EMAIL_BACKEND": "anymail.backends.postmark.EmailBackend",
        "ANYMAIL_POSTMARK_SERVER_TOKEN": "worker-token",
        "ANYMAIL_POSTMARK_API_URL": esp.url,
        "SITE_URL": SITE_URL,
        "DIGEST_CHUNK_SIZE": "10",
        "DIGEST_SEND_BACKOFF": "0.05",
        "EMAIL_TIMEOUT": "2",
    }
    env.update({key: str(value) for key, value in extra.items()})
    return env


def seed_readers(count: int, prefix: str = "reader") -> list[str]:
    """Papers for the edition and `count` daily readers who all have something to read."""
    make_paper(1, topics={"reasoning": 0.9}, upvotes=40)
    make_paper(2, topics={"agents": 0.8}, upvotes=10)
    return [make_reader(f"{prefix}{i}@example.org", ["reasoning", "agents"]).email for i in range(count)]


def wait_for_night(edition: date, *, timeout: float, workers=()) -> list[DigestRun]:
    """Wait until every run of the edition is over; print the workers' logs if not."""

    def over():
        runs = list(DigestRun.objects.filter(edition=edition))
        # A run still planning (running) is not over either.
        if runs and all(run.status in (DigestRun.Status.SUCCEEDED, DigestRun.Status.FAILED) for run in runs):
            return runs
        return None

    try:
        return wait_for(over, timeout=timeout, interval=0.25, message=f"the runs of {edition} to finish")
    except BaseException:
        for worker in workers:
            print(f"--- {worker.queue} log ---\n{worker.log()[-6000:]}")
        raise


def assert_one_digest_or_recorded_failure(esp: FakeESP, emails: list[str], edition: date) -> dict:
    """Each due reader has one delivery row, and either exactly one message at the
    ESP whose id the row recorded (or an empty id when the ESP's answer could not
    be read), or a failed or uncertain row with its reason."""
    counts = esp.state.recipients()
    duplicates = {email: n for email, n in counts.items() if n > 1}
    assert not duplicates, f"sent more than once: {duplicates}"
    assert esp.stats()["invalid"] == 0, esp.stats()["invalid_examples"]
    assert set(counts) <= set(emails), f"mail to someone not due: {set(counts) - set(emails)}"
    rows = {
        email.lower(): (status, message_id, error)
        for email, status, message_id, error in Delivery.objects.filter(edition=edition).values_list(
            "subscriber__email", "status", "esp_message_id", "error"
        )
    }
    assert set(rows) == set(emails), "every due reader has exactly one delivery row"
    accepted = {message.to.lower(): message.message_id for message in esp.accepted}
    outcome = {"sent": 0, "failed": 0, "uncertain": 0}
    for email in emails:
        status, message_id, error = rows[email]
        if status == Delivery.Status.SENT:
            assert email in accepted, f"{email}: row says sent, the ESP has nothing"
            assert message_id in (accepted[email], ""), f"{email}: row says sent as {message_id!r}"
            assert message_id or error, f"{email}: sent without an id must say why"
            outcome["sent"] += 1
        elif status == Delivery.Status.UNCERTAIN:
            assert error, f"{email} is uncertain without a reason"
            outcome["uncertain"] += 1
        else:
            assert status == Delivery.Status.FAILED, f"{email} ended {status}"
            assert error, f"{email} failed without a reason"
            assert email not in counts, f"{email} is marked failed but the ESP accepted it"
            outcome["failed"] += 1
    if not outcome["uncertain"]:
        del outcome["uncertain"]
    return outcome


class SlowESP(FakeESP):
    """A fake ESP that takes `delay` seconds to answer each send, so the night lasts
    long enough to strike in the middle of it.

    Like a real ESP it keeps each message when the request arrives and only then
    takes its time: a client that goes away before the answer leaves the message
    sent. With `hold_after`, answers after that many accepted messages are parked
    until release(), so a test can kill a worker while it surely waits for the
    ESP's answer to a message the ESP already has.
    """

    def __init__(self, *, delay: float = 0.0, hold_after: int | None = None, **options):
        super().__init__(latency_ms=delay * 1000, **options)
        self.released = threading.Event()
        self.lock = threading.Lock()
        self.held = 0
        esp = self
        base = self.server.RequestHandlerClass

        class Handler(base):
            def _wait_latency(self):
                super()._wait_latency()
                if hold_after is not None and esp.stats()["accepted"] > hold_after:
                    with esp.lock:
                        esp.held += 1
                    esp.released.wait(timeout=60)

        self.server.RequestHandlerClass = Handler

    def release(self):
        self.released.set()

    def stop(self):
        self.release()
        super().stop()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RedisServer:
    """A throwaway redis-server on its own port, without persistence: a restart loses everything."""

    def __init__(self, directory):
        self.port = _free_port()
        self.directory = directory
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self):
        import redis

        log = open(self.directory / f"redis-{self.port}.log", "ab")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)

        def answers():
            try:
                return client.ping()
            except redis.RedisError:
                return False

        wait_for(answers, timeout=10, message=f"redis-server on port {self.port}")
        client.close()

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def restart(self):
        self.stop()
        self.start()


@pytest.fixture
def private_redis(redis_url, tmp_path):
    """A Redis server only this test uses, so it can be restarted mid-run."""
    if not shutil.which("redis-server"):
        service_missing("redis-server is not installed")
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()
