"""Importing a CSV list: double opt-in or recorded consent, every problem reported by line,
nothing half-written."""

import pytest
from django.core import mail
from django.core.management import CommandError, call_command

from subscribers.imports import ImportFileError, Outcome, read_upload, subscribers_import
from subscribers.models import Subscriber, SuppressionEvent
from tests.subscribers.factories import SubscriberFactory

pytestmark = pytest.mark.django_db

GOOD = """email,topics,interests,frequency
new.one@example.org,reasoning agents,,daily
New.Two@Example.ORG,Reasoning;efficiency,"speculative decoding, quantization",weekly
"""


@pytest.fixture
def on_the_list(db):
    SubscriberFactory(email="known@example.org", status=Subscriber.Status.UNSUBSCRIBED)
    SubscriberFactory(email="bounced@example.org", status=Subscriber.Status.SUPPRESSED)
    SuppressionEvent.objects.create(event_id="e1", email="complained@example.org", event_type="complained")


def test_new_readers_get_the_double_opt_in_email_and_stay_pending(commit):
    with commit():
        report = subscribers_import(text=GOOD)
    assert report.written and report.added == 2
    one = Subscriber.objects.get(email="new.one@example.org")
    two = Subscriber.objects.get(email="New.Two@example.org")
    assert one.status == two.status == Subscriber.Status.PENDING
    assert sorted(one.topics.values_list("slug", flat=True)) == ["agents", "reasoning"]
    assert sorted(two.topics.values_list("slug", flat=True)) == ["efficiency", "reasoning"]
    assert two.interest_list == ["speculative decoding", "quantization"]
    assert two.frequency == "weekly" and two.weekday == 0
    assert one.consent_source == "imported"
    assert sorted(m.to[0] for m in mail.outbox) == ["New.Two@example.org", "new.one@example.org"]
    assert all("Confirm your" in m.subject for m in mail.outbox)


def test_consented_readers_are_active_with_the_source_kept_as_evidence(commit):
    with commit():
        report = subscribers_import(text=GOOD, consented=True, source="NeurIPS 2026 booth sheet")
    assert report.added == 2
    reader = Subscriber.objects.get(email="new.one@example.org")
    assert reader.status == Subscriber.Status.ACTIVE and reader.confirmed_at is not None
    assert reader.consent_source == "imported: NeurIPS 2026 booth sheet"
    assert mail.outbox == []


def test_consent_without_a_source_note_is_refused():
    with pytest.raises(ImportFileError, match="source note"):
        subscribers_import(text=GOOD, consented=True, source="  ")
    assert Subscriber.objects.count() == 0


def test_duplicates_known_and_suppressed_addresses_are_skipped_line_by_line(on_the_list, commit):
    text = (
        "email,topics\n"
        "fresh@example.org,reasoning\n"
        "FRESH@example.org,agents\n"
        "known@example.org,reasoning\n"
        "bounced@example.org,reasoning\n"
        "complained@example.org,reasoning\n"
    )
    with commit():
        report = subscribers_import(text=text)
    assert [(line.line, line.outcome) for line in report.lines] == [
        (2, Outcome.ADD),
        (3, Outcome.DUPLICATE),
        (4, Outcome.EXISTS),
        (5, Outcome.SUPPRESSED),
        (6, Outcome.SUPPRESSED),
    ]
    assert "same address as line 2" in report.lines[1].message
    assert "already on the list (unsubscribed)" in report.lines[2].message
    assert report.added == 1
    assert Subscriber.objects.get(email="known@example.org").status == Subscriber.Status.UNSUBSCRIBED
    assert not Subscriber.objects.filter(email="complained@example.org").exists()
    assert [m.to for m in mail.outbox] == [["fresh@example.org"]]


def test_a_malformed_line_means_nothing_is_written_and_every_problem_is_named(commit):
    text = (
        "email,topics,interests,frequency,weekday\n"
        "good@example.org,reasoning,,weekly,friday\n"
        "not-an-address,reasoning,,,\n"
        "other@example.org,teleportation,,,\n"
        "third@example.org,,,,\n"
        "fourth@example.org,reasoning,,monthly,\n"
        "fifth@example.org,reasoning,,weekly,someday\n"
        "sixth@example.org,reasoning,,,,surplus\n"
    )
    with commit():
        report = subscribers_import(text=text)
    assert not report.written and report.added == 0
    errors = {line.line: line.message for line in report.errors}
    assert errors == {
        3: "not a valid email address: 'not-an-address'",
        4: "unknown topic 'teleportation'",
        5: "no topics and no interests: give at least one",
        6: "frequency must be daily or weekly, not 'monthly'",
        7: "weekday must be 0-6 (Monday-Sunday) or a day's name, not 'someday'",
        8: "more fields than the header has columns",
    }
    assert "Nothing was imported: 6 line(s) have errors" in report.summary()
    assert Subscriber.objects.count() == 0 and mail.outbox == []


def test_the_admin_export_format_imports_again(commit):
    text = (
        "email,status,frequency,weekday,digest_size,topics,interests,created_at,confirmed_at,unsubscribed_at\n"
        "ada@example.org,active,weekly,Friday,8,reasoning safety,RLHF; reward models,2026-01-01,,\n"
    )
    with commit():
        report = subscribers_import(text=text)
    assert report.ignored_columns == [
        "status",
        "digest_size",
        "created_at",
        "confirmed_at",
        "unsubscribed_at",
    ]
    ada = Subscriber.objects.get()
    assert ada.weekday == 4 and ada.interest_list == ["RLHF", "reward models"]


def test_dry_run_checks_and_writes_nothing():
    report = subscribers_import(text=GOOD, dry_run=True)
    assert [line.outcome for line in report.lines] == [Outcome.ADD, Outcome.ADD]
    assert report.summary().startswith("Would import 2")
    assert Subscriber.objects.count() == 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "The file is empty"),
        ("address,topics\nada@example.org,reasoning\n", "No email column"),
        ("email,topics,email\na@example.org,reasoning,b@example.org\n", "more than once"),
    ],
)
def test_a_file_that_cannot_be_read_is_refused_whole(text, message):
    with pytest.raises(ImportFileError, match=message):
        subscribers_import(text=text)
    assert Subscriber.objects.count() == 0


def test_uploads_must_be_utf8_text():
    assert read_upload("\ufeffemail\n".encode()) == "email\n"
    with pytest.raises(ImportFileError, match="not UTF-8"):
        read_upload("email\nzoë@example.org\n".encode("latin-1"))


def test_a_failure_while_writing_rolls_back_every_row(monkeypatch):
    calls = []

    real = Subscriber.topics.through.objects.bulk_create

    def fail_after_the_readers(objs, **kwargs):
        calls.append(Subscriber.objects.count())  # the readers were written...
        raise RuntimeError("database went away")  # ...then their topics failed

    monkeypatch.setattr(Subscriber.topics.through.objects, "bulk_create", fail_after_the_readers)
    with pytest.raises(RuntimeError):
        subscribers_import(text=GOOD)
    monkeypatch.setattr(Subscriber.topics.through.objects, "bulk_create", real)
    assert calls == [2]
    assert Subscriber.objects.count() == 0  # rolled back together
    assert mail.outbox == []


def test_import_subscribers_command_reports_each_line(on_the_list, tmp_path, capsys, commit):
    path = tmp_path / "list.csv"
    path.write_text("email,topics\nfresh@example.org,reasoning\nknown@example.org,reasoning\n")
    with commit():
        call_command("import_subscribers", str(path), "--consented", "--source", "old Mailchimp list")
    out = capsys.readouterr().out
    assert "line 3: known@example.org: skipped: already on the list (unsubscribed)" in out
    assert "Imported 1 subscriber(s), active (consent recorded); skipped 1." in out
    assert Subscriber.objects.get(email="fresh@example.org").consent_source == "imported: old Mailchimp list"


def test_import_subscribers_command_fails_on_a_malformed_file(tmp_path, capsys):
    path = tmp_path / "list.csv"
    path.write_text("email,topics\nfresh@example.org,reasoning\nbroken,reasoning\n")
    with pytest.raises(CommandError, match="Nothing was imported: 1 line"):
        call_command("import_subscribers", str(path))
    assert "line 3: broken: not a valid email address" in capsys.readouterr().out
    assert Subscriber.objects.count() == 0
    with pytest.raises(CommandError, match="Cannot read"):
        call_command("import_subscribers", str(tmp_path / "missing.csv"))
