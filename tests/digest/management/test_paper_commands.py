import json
from datetime import date, timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from digest.models import Paper
from digest.services import IngestResult
from digest.sources.base import SourceError
from tests.support import BASE_DIR

pytestmark = pytest.mark.django_db

FIXTURES = BASE_DIR / "tests" / "fixtures" / "sources"
SAMPLE = BASE_DIR / "digest" / "sample_data" / "daily_papers.json"


def run(*args) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_fetch_from_file_prints_counts_and_a_second_run_changes_nothing():
    out, _ = run("fetch_papers", "--from-file", str(SAMPLE))
    assert out.strip() == f"hf: created {Paper.objects.count()}, updated 0, unchanged 0"
    out, _ = run("fetch_papers", "--from-file", str(SAMPLE))
    assert out.strip() == f"hf: created 0, updated 0, unchanged {Paper.objects.count()}"


@pytest.mark.parametrize(
    ("name", "source"), [("hf_page_reserialised.html", "hf-page"), ("arxiv_atom.xml", "arxiv")]
)
def test_fetch_from_file_detects_page_and_atom(name, source):
    out, _ = run("fetch_papers", "--from-file", str(FIXTURES / name))
    assert out.startswith(f"{source}: created 3")


def test_fetch_from_an_unrecognised_file_fails_clearly_and_stores_nothing(tmp_path):
    junk = tmp_path / "junk.txt"
    junk.write_text("hello")
    with pytest.raises(CommandError, match=r"Nothing was stored\. file: unrecognised format"):
        run("fetch_papers", "--from-file", str(junk))
    assert Paper.objects.count() == 0


def test_fetch_one_day_calls_the_service_with_date_and_source(monkeypatch):
    calls = []

    def fake(*, day, source):
        calls.append((day, source))
        return IngestResult(created=2, updated=1, unchanged=4, source=source)

    monkeypatch.setattr("digest.management.commands.fetch_papers.papers_fetch", fake)
    out, _ = run("fetch_papers", "--date", "2026-11-21", "--source", "arxiv")
    assert calls == [(date(2026, 11, 21), "arxiv")]
    assert out.strip() == "arxiv: created 2, updated 1, unchanged 4"


def test_fetch_an_empty_day_says_nothing_new(monkeypatch):
    monkeypatch.setattr(
        "digest.management.commands.fetch_papers.papers_fetch",
        lambda *, day, source: IngestResult(source=source),
    )
    out, _ = run("fetch_papers", "--date", "2026-11-22")
    assert "hf: nothing new on 2026-11-22" in out


def test_fetch_failure_is_a_command_error_naming_the_source(monkeypatch):
    def fail(*, day, source):
        raise SourceError("hf", "https://huggingface.co/api/daily_papers", "expected a JSON array")

    monkeypatch.setattr("digest.management.commands.fetch_papers.papers_fetch", fail)
    with pytest.raises(CommandError, match=r"Nothing was stored for 2026-11-21\. hf: expected a JSON array"):
        run("fetch_papers", "--date", "2026-11-21")


def test_since_backfills_every_day_totals_per_source_and_reports_failed_days(monkeypatch):
    yesterday = timezone.now().date() - timedelta(days=1)
    start = yesterday - timedelta(days=3)
    seen = []

    def fake(*, day, source):
        seen.append(day)
        if day == start + timedelta(days=1):
            raise SourceError("hf", "https://huggingface.co/api/daily_papers", "page 2 was HTML")
        return IngestResult(created=1, source="hf")

    monkeypatch.setattr("digest.management.commands.fetch_papers.papers_fetch", fake)
    out = StringIO()
    with pytest.raises(CommandError, match="1 of 4 days failed"):
        call_command("fetch_papers", "--since", start.isoformat(), stdout=out, stderr=StringIO())
    assert seen == [start + timedelta(days=n) for n in range(4)]
    assert "hf: created 3, updated 0, unchanged 0" in out.getvalue()


def test_bad_dates_are_rejected():
    with pytest.raises(CommandError, match="not a date"):
        run("fetch_papers", "--date", "21/11/2026")
    with pytest.raises(CommandError, match="after yesterday"):
        run("fetch_papers", "--since", "2999-01-01")


def test_export_prints_json_with_topics_strongest_first():
    run("fetch_papers", "--from-file", str(SAMPLE))
    Paper.objects.filter(featured_on=date(2026, 11, 22)).order_by("pk").update(pinned=True)
    out, _ = run("export_papers", "--date", "2026-11-22", "--format", "json")
    rows = json.loads(out)
    assert rows and all(row["featured_on"] == "2026-11-22" for row in rows)
    assert {"arxiv_id", "title", "upvotes", "featured_on", "topics", "hidden", "pinned"} <= set(rows[0])
    assert [r["upvotes"] for r in rows] == sorted((r["upvotes"] for r in rows), reverse=True)
    assert all(row["pinned"] for row in rows)
    paper = Paper.objects.get(arxiv_id=rows[0]["arxiv_id"])
    scores = {pt.topic.slug: pt.score for pt in paper.paper_topics.all()}
    assert rows[0]["topics"] == sorted(scores, key=lambda slug: (-scores[slug], slug))


def test_export_everything_without_a_date():
    run("fetch_papers", "--from-file", str(FIXTURES / "hf_api_2026.json"))
    out, _ = run("export_papers")
    assert len(json.loads(out)) == 3
