from dataclasses import replace
from datetime import date

import pytest

from digest.models import Paper, PaperTopic, Topic
from digest.services import ingest as ingest_module
from digest.services import papers_fetch, papers_ingest, papers_load_file, papers_retag
from digest.sources import hf_api
from digest.sources.base import SourceError
from tests.digest.factories import record
from tests.support import BASE_DIR

pytestmark = pytest.mark.django_db

FIXTURES = BASE_DIR / "tests" / "fixtures" / "sources"
SAMPLE = BASE_DIR / "digest" / "sample_data" / "daily_papers.json"


def _records(name="hf_api_2026.json"):
    return hf_api.parse((FIXTURES / name).read_text())


def _slugs(paper):
    return [row.topic.slug for row in paper.paper_topics.filter(score__gt=0).order_by("-score")]


def test_default_topics_are_seeded_by_the_migration():
    assert Topic.objects.count() == 22
    assert Topic.objects.get(slug="reasoning").phrase_list[:2] == ["~reasoning", "~reason"]


def test_first_ingest_creates_papers_and_tags_them():
    result = papers_ingest(records=_records())
    assert (result.created, result.updated, result.unchanged) == (3, 0, 0)
    paper = Paper.objects.get(arxiv_id="2603.01877")
    assert paper.featured_on == date(2026, 3, 4)
    assert paper.sources == ["hf"]
    assert paper.authors == ["Hyejin Seo", "Marco Ferri"]
    assert paper.hf_url == "https://huggingface.co/papers/2603.01877"
    assert paper.pdf_url == "https://arxiv.org/pdf/2603.01877"
    assert "agents" in _slugs(paper)
    assert _slugs(Paper.objects.get(arxiv_id="2603.02210"))[0] == "image-generation"


def test_same_day_twice_changes_nothing():
    papers_ingest(records=_records())
    before = list(Paper.objects.values().order_by("pk"))
    tags_before = list(PaperTopic.objects.values().order_by("pk"))
    result = papers_ingest(records=_records())
    assert (result.created, result.updated, result.unchanged) == (0, 0, 3)
    assert list(Paper.objects.values().order_by("pk")) == before
    assert list(PaperTopic.objects.values().order_by("pk")) == tags_before


def test_second_run_with_new_votes_changes_only_upvotes_and_counts():
    papers_ingest(records=_records())
    before = {p["arxiv_id"]: p for p in Paper.objects.values()}
    tags_before = list(PaperTopic.objects.values().order_by("pk"))
    later = [replace(r, upvotes=r.upvotes + 5, num_comments=r.num_comments + 1) for r in _records()]
    result = papers_ingest(records=later)
    assert (result.created, result.updated, result.unchanged) == (0, 3, 0)
    for paper in Paper.objects.values():
        old = before[paper["arxiv_id"]]
        changed = {k for k in paper if paper[k] != old[k]}
        assert changed == {"upvotes", "num_comments", "updated_at"}
    assert list(PaperTopic.objects.values().order_by("pk")) == tags_before


def test_curator_edits_survive_a_rescrape_with_new_text():
    papers_ingest(records=_records())
    paper = Paper.objects.get(arxiv_id="2603.01877")
    Paper.objects.filter(pk=paper.pk).update(hidden=True, pinned=True, note="Great read")
    safety = Topic.objects.get(slug="safety")
    agents = Topic.objects.get(slug="agents")
    PaperTopic.objects.create(paper=paper, topic=safety, score=0.9, set_by_curator=True)
    # The curator removed an automatic tag: kept as a score-0 curator row.
    PaperTopic.objects.filter(paper=paper, topic=agents).update(score=0, set_by_curator=True)

    edited = [replace(r, abstract=r.abstract + " LLM agents with tool use, again.") for r in _records()]
    papers_ingest(records=edited)
    paper.refresh_from_db()
    assert (paper.hidden, paper.pinned, paper.note) == (True, True, "Great read")
    assert paper.abstract.endswith("again.")
    assert PaperTopic.objects.get(paper=paper, topic=safety).score == 0.9
    assert PaperTopic.objects.get(paper=paper, topic=agents).score == 0
    assert "agents" not in _slugs(paper) and "safety" in _slugs(paper)


def test_retag_follows_phrase_edits_but_keeps_curator_tags():
    papers_ingest(records=[record("2611.00001", title="Budget planning", abstract="Nothing to see.")])
    paper = Paper.objects.get()
    interp = Topic.objects.get(slug="interpretability")
    PaperTopic.objects.create(paper=paper, topic=interp, score=1.0, set_by_curator=True)
    assert _slugs(paper) == ["interpretability"]
    topic = Topic.objects.get(slug="agents")
    topic.phrases += "\nbudget planning"
    topic.save()
    assert papers_retag(paper_ids=[paper.pk]) == 1
    assert set(_slugs(paper)) == {"interpretability", "agents"}
    topic.is_active = False
    topic.save()
    papers_retag()
    assert _slugs(paper) == ["interpretability"]


def test_arxiv_fills_categories_and_missing_text_while_hf_keeps_votes_and_day():
    hf = record("2603.01877", title="HF title", abstract="", upvotes=12)
    arxiv = record(
        "2603.01877",
        title="arXiv title",
        abstract="From arXiv.",
        categories=("cs.AI", "cs.CL"),
        featured_on=None,
        upvotes=0,
        source="arxiv",
    )
    papers_ingest(records=[arxiv, hf])  # order does not matter
    paper = Paper.objects.get()
    assert (paper.title, paper.abstract, paper.upvotes) == ("HF title", "From arXiv.", 12)
    assert paper.featured_on == date(2026, 11, 21)
    assert paper.categories == ["cs.AI", "cs.CL"]
    assert sorted(paper.sources) == ["arxiv", "hf"]


def test_arxiv_seen_first_then_featured_on_hugging_face():
    papers_ingest(
        records=[record("2603.01877", featured_on=None, upvotes=0, source="arxiv", categories=("cs.LG",))]
    )
    result = papers_ingest(records=[record("2603.01877", upvotes=30)])
    assert result.updated == 1
    paper = Paper.objects.get()
    assert (paper.featured_on, paper.upvotes, paper.categories) == (date(2026, 11, 21), 30, ["cs.LG"])
    assert paper.sources == ["arxiv", "hf"]


def test_an_arxiv_run_never_resets_hugging_face_votes():
    papers_ingest(records=[record("2603.01877", upvotes=30)])
    papers_ingest(records=[record("2603.01877", upvotes=0, featured_on=None, source="arxiv")])
    assert Paper.objects.get().upvotes == 30


def test_a_failure_during_ingest_writes_nothing(monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("tagger crashed")

    monkeypatch.setattr(ingest_module, "_tag", boom)
    with pytest.raises(RuntimeError):
        papers_ingest(records=_records())
    assert Paper.objects.count() == 0


def test_ingest_uses_bulk_queries_not_one_per_paper(django_assert_max_num_queries):
    small = [record(f"2611.{n:05d}", title=f"Video generation {n}") for n in range(20)]
    large = [record(f"2612.{n:05d}", title=f"Video generation {n}") for n in range(400)]
    with django_assert_max_num_queries(12):
        papers_ingest(records=small)
    # SQLite splits bulk inserts into batches of a few dozen rows; still far below one query per paper.
    with django_assert_max_num_queries(25):
        papers_ingest(records=large)
    assert PaperTopic.objects.filter(topic__slug="video").count() == 420


def test_load_file_detects_each_format():
    for name, source in [
        ("hf_api_2024.json", "hf"),
        ("hf_page_escaped.html", "hf-page"),
        ("arxiv_atom.xml", "arxiv"),
    ]:
        result = papers_load_file(path=FIXTURES / name)
        assert result.source == source and result.total == 3
    assert Paper.objects.get(arxiv_id="2603.01877").sources == ["hf-page", "arxiv"]


def test_load_file_with_broken_content_raises_and_writes_nothing(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text('[{"paper": {"id": "2611.00001", "title": "ok"}}, {"paper": ')
    with pytest.raises(SourceError, match="not valid JSON"):
        papers_load_file(path=broken)
    with pytest.raises(SourceError, match="cannot read file"):
        papers_load_file(path=tmp_path / "missing.json")
    assert Paper.objects.count() == 0


def test_load_file_over_the_size_cap_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(ingest_module.http, "MAX_RESPONSE_BYTES", 10)
    big = tmp_path / "big.json"
    big.write_text("[" + " " * 20 + "]")
    with pytest.raises(SourceError, match="over the 10-byte cap"):
        papers_load_file(path=big)


def test_sample_data_loads_about_forty_papers_over_three_days_with_every_topic():
    result = papers_load_file(path=SAMPLE)
    assert 35 <= result.created <= 45
    days = set(Paper.objects.values_list("featured_on", flat=True))
    assert days == {date(2026, 11, 21), date(2026, 11, 22), date(2026, 11, 23)}
    tagged = set(PaperTopic.objects.values_list("topic__slug", flat=True))
    assert tagged == set(Topic.objects.values_list("slug", flat=True))
    upvotes = [r.upvotes for r in hf_api.parse(SAMPLE.read_text())]
    assert upvotes != sorted(upvotes, reverse=True)


def test_fetch_falls_back_to_the_page_when_the_api_fails(monkeypatch):
    calls = []

    def fake_fetch(source, day, **options):
        calls.append(source)
        if source == "hf":
            raise SourceError(
                "hf", "https://huggingface.co/api/daily_papers", "gave up after 4 attempts: HTTP 503"
            )
        return [replace(r, source="hf-page") for r in _records()]

    monkeypatch.setattr(ingest_module.sources, "fetch", fake_fetch)
    result = papers_fetch(day=date(2026, 3, 4), source="hf")
    assert calls == ["hf", "hf-page"]
    assert result.source == "hf-page" and result.created == 3


def test_fetch_reports_both_failures_and_writes_nothing(monkeypatch):
    def fake_fetch(source, day, **options):
        raise SourceError(source, f"https://example.test/{source}", "no DailyPapers element")

    monkeypatch.setattr(ingest_module.sources, "fetch", fake_fetch)
    with pytest.raises(SourceError, match="the papers page failed too") as caught:
        papers_fetch(day=date(2026, 3, 4), source="hf")
    assert caught.value.source == "hf"
    assert Paper.objects.count() == 0


def test_fetch_of_an_empty_day_is_nothing_new(monkeypatch):
    monkeypatch.setattr(ingest_module.sources, "fetch", lambda source, day, **options: [])
    result = papers_fetch(day=date(2026, 3, 7), source="arxiv")
    assert result.total == 0 and result.notes == ["nothing new on 2026-03-07"]
