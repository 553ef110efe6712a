from datetime import UTC, date, datetime

import pytest

from digest.sources import arxiv
from digest.sources.base import SourceError

FEED_HEAD = (
    '<?xml version="1.0" encoding="UTF-8"?><feed xmlns="http://www.w3.org/2005/Atom" '
    'xmlns:opensearch="http://a9.com/-/spec/opensearch/1.1/">'
)


def _feed(total: int, entries: str = "") -> str:
    return f"{FEED_HEAD}<opensearch:totalResults>{total}</opensearch:totalResults>{entries}</feed>"


def _entry(arxiv_id: str, title: str = "A title") -> str:
    return f"<entry><id>http://arxiv.org/abs/{arxiv_id}v1</id><title>{title}</title><summary>Text.</summary></entry>"


def test_parse_reads_ids_text_authors_dates_and_categories(fixture_text):
    records = {r.arxiv_id: r for r in arxiv.parse(fixture_text("arxiv_atom.xml"))}
    assert set(records) == {"2603.01877", "2603.01990", "2603.02001"}
    paper = records["2603.01877"]
    assert paper.title == "Budget-Aware Tool Use for LLM Agents"
    assert paper.abstract.startswith(
        "LLM agents call tools without regard to cost. We train agents to plan tool calls"
    )
    assert paper.authors == ("Hyejin Seo", "Marco Ferri")
    assert paper.published_at == datetime(2026, 3, 2, 18, 0, 1, tzinfo=UTC)
    assert paper.categories == ("cs.AI", "cs.CL")
    assert paper.github_repo == "https://github.com/example-lab/budget-agents"
    assert paper.featured_on is None and paper.upvotes == 0 and paper.source == "arxiv"
    assert records["2603.01990"].authors == ("Élodie Martin",)


def test_zero_total_is_an_empty_day():
    assert arxiv.parse(_feed(0)) == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<feed", "not well-formed XML"),
        ("<rss><channel/></rss>", "expected an Atom <feed>"),
        (f"{FEED_HEAD}</feed>", "no opensearch:totalResults"),
        (_feed(2, "<entry><id>junk</id><title>x</title></entry>"), "none of the 1 entries"),
        (
            '<?xml version="1.0"?><!DOCTYPE feed [<!ENTITY a "aaaa">]><feed xmlns="http://www.w3.org/2005/Atom"/>',
            "declares a DTD",
        ),
    ],
)
def test_unrecognised_feeds_raise_a_clear_source_error(text, message):
    with pytest.raises(SourceError, match=message) as caught:
        arxiv.parse(text, url="https://export.arxiv.org/api/query?start=0")
    assert caught.value.source == "arxiv"


def test_arxiv_error_entry_becomes_a_source_error(fixture_text):
    with pytest.raises(SourceError, match="arXiv answered an error: incorrect id format for bad"):
        arxiv.parse(fixture_text("arxiv_error.xml"))


def test_duplicate_entries_are_skipped():
    records = arxiv.parse(_feed(2, _entry("2603.00001") + _entry("2603.00001")))
    assert [r.arxiv_id for r in records] == ["2603.00001"]


class FakeClock:
    def __init__(self):
        self.now = 100.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_throttle_keeps_requests_three_seconds_apart():
    fake = FakeClock()
    throttle = arxiv.Throttle(3.0, clock=fake.clock, sleep=fake.sleep)
    throttle.wait()  # first request goes at once
    fake.now += 1.0
    throttle.wait()
    fake.now += 5.0
    throttle.wait()  # already more than 3 s later
    assert fake.slept == [2.0]


def test_fetch_pages_through_results_and_waits_between_requests():
    fake = FakeClock()
    throttle = arxiv.Throttle(3.0, clock=fake.clock, sleep=fake.sleep)
    pages = {
        0: _feed(3, _entry("2603.00001") + _entry("2603.00002")),
        2: _feed(3, _entry("2603.00003")),
    }
    seen = []

    def fake_fetch(url, *, source, params, before_attempt, **options):
        before_attempt()
        seen.append(params)
        return pages[params["start"]]

    records = arxiv.fetch(
        date(2026, 3, 2), categories=["cs.CL", "cs.LG"], fetch_text=fake_fetch, throttle=throttle, page_size=2
    )
    assert [r.arxiv_id for r in records] == ["2603.00001", "2603.00002", "2603.00003"]
    assert (
        seen[0]["search_query"] == "(cat:cs.CL OR cat:cs.LG) AND submittedDate:[202603020000 TO 202603022359]"
    )
    assert [p["start"] for p in seen] == [0, 2]
    assert fake.slept == [3.0]


def test_fetch_asks_again_for_a_spuriously_empty_page_then_fails_clearly():
    throttle = arxiv.Throttle(0.0)
    calls = []

    def fake_fetch(url, *, source, params, before_attempt, **options):
        calls.append(params["start"])
        return _feed(5)  # says five results, returns none

    with pytest.raises(SourceError, match="reports 5 results but the page at start=0 is empty"):
        arxiv.fetch(date(2026, 3, 2), fetch_text=fake_fetch, throttle=throttle)
    assert calls == [0, 0, 0]


def test_fetch_uses_the_categories_from_settings(settings):
    settings.ARXIV_CATEGORIES = ["cs.RO"]
    captured = {}

    def fake_fetch(url, *, source, params, before_attempt, **options):
        captured.update(params)
        return _feed(0)

    assert arxiv.fetch(date(2026, 3, 7), fetch_text=fake_fetch, throttle=arxiv.Throttle(0.0)) == []
    assert captured["search_query"].startswith("(cat:cs.RO) AND")
