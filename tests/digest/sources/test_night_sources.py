"""The night's sources: which arXiv categories are asked for, each source's failure
kept apart, arXiv never overwriting Hugging Face, and the demo never fetching."""

from datetime import date

import pytest
from django.core.checks import run_checks
from django.core.management import call_command

from digest import sources
from digest.models import Paper
from digest.services.ingest import papers_ingest
from digest.sources import arxiv
from digest.sources.base import PaperRecord, SourceError
from subscribers.selectors import followed_arxiv_categories
from tests.digest.builders import make_reader

DAY = date(2026, 11, 23)


def test_configured_categories_come_first_then_the_most_followed_up_to_the_limit():
    chosen, left_out = arxiv.categories_to_fetch(
        ["cs.CL", "cs.LG"], {"cs.RO": 3, "cs.LG": 9, "stat.ML": 5, "eess.AS": 3, "q-bio.NC": 1}, limit=5
    )
    assert chosen == ("cs.CL", "cs.LG", "stat.ML", "cs.RO", "eess.AS")
    assert left_out == ("q-bio.NC",)


@pytest.mark.django_db
def test_followed_categories_count_active_and_paused_readers_only():
    make_reader("a@example.org", [], arxiv_categories=["cs.RO", "stat.ML"])
    make_reader("b@example.org", [], arxiv_categories=["cs.RO"], status="paused")
    make_reader("c@example.org", [], arxiv_categories=["eess.AS"], status="unsubscribed")
    make_reader("d@example.org", ["reasoning"])
    assert followed_arxiv_categories() == {"cs.RO": 2, "stat.ML": 1}


def _record(arxiv_id, source, **fields):
    return PaperRecord(
        arxiv_id=arxiv_id, title=fields.pop("title", f"Paper {arxiv_id}"), source=source, **fields
    )


def test_fetch_sources_keeps_each_failure_apart_and_notes_the_fallback(monkeypatch):
    def broken(day, **options):
        raise SourceError("hf", "http://127.0.0.1/api", "no JSON array")

    asked = {}

    def page(day, **options):
        return [_record("2611.00001", "hf-page")]

    def atom(day, **options):
        asked.update(options)
        raise SourceError("arxiv", "http://127.0.0.1/query", "expected an Atom <feed>")

    monkeypatch.setitem(sources.FETCHERS, "hf", broken)
    monkeypatch.setitem(sources.FETCHERS, "hf-page", page)
    monkeypatch.setitem(sources.FETCHERS, "arxiv", atom)

    harvest = sources.fetch_sources(DAY, ["hf", "arxiv"], arxiv_categories=("cs.CL", "cs.RO"))

    assert [record.arxiv_id for record in harvest.records] == ["2611.00001"]
    assert harvest.answered == {"hf": ("hf-page", 1)}
    assert [failure.source for failure in harvest.failures] == ["arxiv"]
    assert asked == {"categories": ("cs.CL", "cs.RO")}


@pytest.mark.django_db
def test_a_later_arxiv_listing_fills_in_but_never_replaces_hugging_faces_text():
    papers_ingest(records=[_record("2611.00002", "hf", title="HF title", abstract="", upvotes=7)])
    papers_ingest(
        records=[
            _record(
                "2611.00002", "arxiv", title="arXiv title", abstract="arXiv abstract", categories=("cs.CL",)
            )
        ]
    )
    paper = Paper.objects.get()
    assert paper.title == "HF title" and paper.upvotes == 7
    assert paper.abstract == "arXiv abstract" and paper.categories == ["cs.CL"]
    assert paper.sources == ["hf", "arxiv"]


def test_an_unknown_configured_category_fails_the_system_check(settings):
    settings.ARXIV_CATEGORIES = ["cs.CL", "cs.MAGIC"]
    errors = [message for message in run_checks() if message.id == "paperboy.E001"]
    assert len(errors) == 1 and "cs.MAGIC" in errors[0].msg
    settings.ARXIV_CATEGORIES = ["cs.CL", "stat.ML"]
    assert not [message for message in run_checks() if message.id == "paperboy.E001"]


@pytest.mark.django_db
def test_the_demo_never_fetches(monkeypatch, isolated_outbox, capsys, settings):
    settings.EMAIL_BACKEND = "mail.backends.OutboxEmailBackend"

    def no_network(day, **options):
        raise AssertionError("the demo must stay offline")

    for name in sources.SOURCES:
        monkeypatch.setitem(sources.FETCHERS, name, no_network)
    call_command("demo")
    assert "6 due, 5 sent" in capsys.readouterr().out
    assert len(list(isolated_outbox.glob("*.eml"))) == 5
