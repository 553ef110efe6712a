import pytest
from django.core import mail
from django.core.management import CommandError, call_command

from digest import sources
from digest.models import Delivery, DigestRun
from digest.sources.base import SourceError
from tests.digest.builders import EDITION, make_paper, make_reader

pytestmark = pytest.mark.django_db


@pytest.fixture
def night(settings):
    settings.ADMINS = [("Ops", "ops@example.org")]
    make_paper(1, topics={"reasoning": 0.9}, title="Proofs with search", upvotes=20)
    make_paper(2, topics={"video": 0.9}, title="Video worlds", upvotes=3)
    make_reader("ada@example.org", ["reasoning"])
    make_reader("bob@example.org", ["video"])


def test_run_digest_runs_the_night_in_process(night, capsys):
    call_command("run_digest", date=EDITION, no_fetch=True)
    out = capsys.readouterr()
    assert "2 due, 2 sent, 0 skipped as empty, 0 failed" in out.out
    assert "digest" in out.err  # the progress bar
    assert sorted(m.to[0] for m in mail.outbox) == ["ada@example.org", "bob@example.org"]


def test_run_digest_only_one_subscriber(night):
    call_command("run_digest", date=EDITION, no_fetch=True, only="BOB@example.org")
    assert [m.to[0] for m in mail.outbox] == ["bob@example.org"]
    assert Delivery.objects.count() == 1


def test_dry_run_sends_and_stores_nothing(night, capsys):
    call_command("run_digest", date=EDITION, dry_run=True)
    out = capsys.readouterr().out
    assert "2 due, 2 would get a digest, 0 would be skipped as empty" in out
    assert "ada@example.org: 1 paper for Tue 24 Nov: Proofs with search" in out
    assert mail.outbox == []
    assert Delivery.objects.count() == 0 and DigestRun.objects.count() == 0


def test_every_source_failing_stops_the_run_tells_admins_and_sends_nothing(night, monkeypatch):
    def broken(day, **kwargs):
        raise SourceError("hf", "https://huggingface.co/api/daily_papers?date=2026-11-23", "no JSON array")

    for name in sources.SOURCES:
        monkeypatch.setitem(sources.FETCHERS, name, broken)
    with pytest.raises(CommandError, match="failed and sent nothing"):
        call_command("run_digest", date=EDITION)
    run = DigestRun.objects.get()
    assert run.status == DigestRun.Status.FAILED
    assert "no JSON array" in run.errors[0]
    assert Delivery.objects.count() == 0
    [alert] = mail.outbox
    assert alert.to == ["ops@example.org"]
    assert "Digest run for 2026-11-24 failed" in alert.subject
    assert "no JSON array" in alert.body


def test_bad_date_is_a_clear_error(night):
    with pytest.raises(CommandError, match="not a date"):
        call_command("run_digest", "--date", "24/11/2026")


@pytest.mark.parametrize("fmt", ["text", "html", "eml"])
def test_preview_digest_prints_what_would_be_sent(night, capsys, fmt):
    call_command("preview_digest", "ada@example.org", format=fmt, date=EDITION)
    out = capsys.readouterr().out
    assert "Proofs with search" in out
    assert "Video worlds" not in out
    if fmt == "eml":
        assert "List-Unsubscribe-Post: List-Unsubscribe=One-Click" in out
    assert mail.outbox == []


def test_preview_digest_unknown_address(night):
    with pytest.raises(CommandError, match="No subscriber"):
        call_command("preview_digest", "nobody@example.org")


def test_demo_command_leaves_one_eml_per_reader_and_can_run_again(isolated_outbox, settings, capsys):
    settings.EMAIL_BACKEND = "mail.backends.OutboxEmailBackend"
    call_command("demo")
    first = sorted(isolated_outbox.glob("*.eml"))
    sent = Delivery.objects.filter(status="sent").count()
    assert sent >= 4
    assert len(first) == sent
    call_command("demo")
    assert len(list(isolated_outbox.glob("*.eml"))) == 2 * sent
    assert "Outbox:" in capsys.readouterr().out
