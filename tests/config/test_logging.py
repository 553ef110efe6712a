"""Logs name the run and delivery they belong to; LOG_FORMAT=json writes one JSON object a line."""

import io
import json
import logging
import logging.config
import subprocess

import pytest
from django.core.mail import EmailMessage

from config.logging import current_log_context, log_context, log_context_bind, logging_config
from digest.models import DigestRun
from digest.tasks import nightly_run
from mail.send import send_with_retries
from tests import support
from tests.digest.builders import EDITION
from tests.digest.sending_support import make_readers
from tests.support import wait_for


@pytest.fixture
def json_lines():
    """Route the root logger through the JSON handler the settings build; yield a reader of its lines."""
    stream = io.StringIO()
    config = logging_config(log_format="json", level="INFO")
    formatter = logging.config.DictConfigurator(config).configure_formatter(config["formatters"]["json"])
    console = logging.StreamHandler(stream)
    console.setFormatter(formatter)
    console.addFilter(logging.config.DictConfigurator(config).configure_filter(config["filters"]["context"]))
    root = logging.getLogger()
    previous_level = root.level
    root.addHandler(console)
    root.setLevel(logging.INFO)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    root.removeHandler(console)
    root.setLevel(previous_level)


def test_contexts_nest_and_unwind():
    assert current_log_context() == {}
    with log_context(run_id=7):
        with log_context(delivery_id=11, chunk=None):
            assert current_log_context() == {"run_id": 7, "delivery_id": 11}
        assert current_log_context() == {"run_id": 7}
    assert current_log_context() == {}


def test_bind_fills_the_open_block_only():
    log_context_bind(run_id=1)  # no block: nothing sticks to later work
    assert current_log_context() == {}
    with log_context():
        with log_context(delivery_id=3):
            log_context_bind(run_id=2)
            assert current_log_context() == {"delivery_id": 3, "run_id": 2}
        assert current_log_context() == {}
    assert current_log_context() == {}


def test_unknown_context_fields_are_refused():
    with pytest.raises(TypeError, match="unknown log context field"), log_context(reader="x"):
        pass


def test_plain_lines_append_the_ids():
    config = logging_config(log_format="plain", level="INFO")
    formatter = logging.config.DictConfigurator(config).configure_formatter(config["formatters"]["plain"])
    record = logging.LogRecord("digest", logging.INFO, __file__, 1, "sent %s", ("x",), None)
    record.run_id, record.delivery_id = 5, 9
    assert formatter.format(record).endswith("INFO digest sent x [run_id=5 delivery_id=9]")


# Outside a test transaction, as in a worker: send tasks queued on commit run at once.
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_every_line_of_a_nightly_run_carries_its_run_id(json_lines, settings):
    settings.DIGEST_CHUNK_SIZE = 2  # several chunks
    make_readers(5)
    logging.getLogger("digest").info("before the run")

    run_id = nightly_run(EDITION.isoformat(), fetch=False)
    logging.getLogger("digest").info("after the run")

    lines = json_lines()
    assert lines[0]["message"] == "before the run" and "run_id" not in lines[0]
    assert lines[-1]["message"] == "after the run" and "run_id" not in lines[-1]
    during = lines[1:-1]
    assert any("deliveries planned" in line["message"] for line in during)
    (done,) = [line for line in during if " done: 5 sent" in line["message"]]
    assert done["chunk"]  # logged by the chunk that sent the last digest
    assert {line["run_id"] for line in during} == {run_id}
    assert DigestRun.objects.get(id=run_id).sent_count == 5
    assert {"time", "level", "logger", "message"} <= set(lines[1])


@pytest.mark.django_db
def test_a_retry_line_names_the_delivery(json_lines, settings):
    settings.DIGEST_SEND_ATTEMPTS = 2

    class OnceDown:
        calls = 0

        def send_messages(self, messages):
            self.calls += 1
            if self.calls == 1:
                raise ConnectionRefusedError("connection refused")
            return 1

    message = EmailMessage(subject="s", body="b", to=["a@example.org"])
    message.metadata = {"delivery_id": "42"}
    with log_context(run_id=3):
        send_with_retries(OnceDown(), message, sleep=lambda _: None)

    (line,) = [line for line in json_lines() if "transient send error" in line["message"]]
    assert (line["run_id"], line["delivery_id"]) == (3, "42")


def run_python(code: str, **env) -> subprocess.CompletedProcess:
    return support.run_python(code, DATABASE_URL=None, REDIS_URL=None, **env)


LOG_ONE_LINE = (
    "import django, logging; django.setup(); from config.logging import log_context\n"
    "with log_context(run_id=12):\n"
    "    logging.getLogger('digest.probe').warning('hello %s', 'there')\n"
)


def test_log_format_json_writes_json_lines(tmp_path):
    result = run_python(LOG_ONE_LINE, LOG_FORMAT="json", VAR_DIR=tmp_path)
    assert result.returncode == 0, result.stderr
    (line,) = [json.loads(text) for text in result.stderr.splitlines() if text.strip()]
    assert line["message"] == "hello there"
    assert (line["level"], line["logger"], line["run_id"]) == ("WARNING", "digest.probe", 12)


def test_plain_is_the_default_format(tmp_path):
    result = run_python(LOG_ONE_LINE, LOG_FORMAT=None, VAR_DIR=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().endswith("WARNING digest.probe hello there [run_id=12]")


def test_an_unknown_log_format_stops_startup(tmp_path):
    result = run_python("import django; django.setup()", LOG_FORMAT="xml", VAR_DIR=tmp_path)
    assert result.returncode != 0
    assert "ImproperlyConfigured: LOG_FORMAT must be one of plain, json" in result.stderr


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_real_worker_logs_json_with_the_run_id(postgres_required, celery_worker_factory):
    make_readers(3)
    worker = celery_worker_factory(extra_env={"LOG_FORMAT": "json"})
    run_id = nightly_run.apply_async(args=[EDITION.isoformat(), False], queue=worker.queue).get(timeout=90)

    def finished():
        return DigestRun.objects.filter(id=run_id, status=DigestRun.Status.SUCCEEDED).exists()

    wait_for(finished, timeout=90, interval=0.3, message="the run to finish")
    records = [json.loads(line) for line in worker.log().splitlines() if line.startswith("{")]
    ours = [record for record in records if record["logger"].startswith("digest.")]
    assert ours, worker.log()
    assert {record.get("run_id") for record in ours} == {run_id}
    # Celery's own lines go through the same JSON handler.
    assert any(record["logger"].startswith("celery.") for record in records)
