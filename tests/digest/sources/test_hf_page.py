import html
import json
from datetime import date

import pytest
from bs4 import BeautifulSoup

from digest.sources import hf_api, hf_page
from digest.sources.base import SourceError


def _ids(records):
    return [r.arxiv_id for r in records]


def test_escaped_data_props_parse_like_the_api(fixture_text):
    records = hf_page.parse(fixture_text("hf_page_escaped.html"))
    api = hf_api.parse(fixture_text("hf_api_2026.json"))
    assert _ids(records) == _ids(api)
    assert all(r.source == "hf-page" for r in records)
    first = records[0]
    assert first.abstract.endswith("The agent's budget is a hard limit.")
    assert first.ai_keywords == api[0].ai_keywords
    assert first.featured_on == date(2026, 3, 4)


def test_reserialised_page_with_single_quoted_raw_json_parses(fixture_text):
    escaped = hf_page.parse(fixture_text("hf_page_escaped.html"))
    reserialised = hf_page.parse(fixture_text("hf_page_reserialised.html"))
    assert reserialised == escaped  # same records, field for field


def test_page_round_tripped_through_beautifulsoup_still_parses(fixture_text):
    saved = str(BeautifulSoup(fixture_text("hf_page_escaped.html"), "html.parser"))
    assert _ids(hf_page.parse(saved)) == ["2603.01877", "2603.02210", "2603.00415"]


def test_weekend_page_with_no_papers_is_an_empty_day(fixture_text):
    assert hf_page.parse(fixture_text("hf_page_empty_day.html")) == []


def _page(props: str, body: str = "") -> str:
    div = f'<div class="SVELTE_HYDRATER contents" data-target="DailyPapers" data-props="{props}">{body}</div>'
    return f"<html><body>{div}</body></html>"


@pytest.mark.parametrize(
    ("page", "message"),
    [
        ("<html><body><h1>Daily Papers</h1></body></html>", 'no element with data-target="DailyPapers"'),
        ('<div data-target="DailyPapers"></div>', "has no data-props attribute"),
        (_page("{not json"), "data-props is not valid JSON"),
        (_page(html.escape(json.dumps({"papers": []}))), "no 'dailyPapers' array"),
        (_page(html.escape(json.dumps({"dailyPapers": {"a": 1}}))), "no 'dailyPapers' array"),
        (_page(html.escape(json.dumps({"dailyPapers": [{"x": 1}]}))), "none of the 1 items"),
        ("\x00\x01garbage", 'no element with data-target="DailyPapers"'),
    ],
)
def test_unrecognised_pages_raise_a_clear_source_error(page, message):
    with pytest.raises(SourceError, match=message) as caught:
        hf_page.parse(page, url="https://huggingface.co/papers/date/2026-03-04")
    assert caught.value.source == "hf-page"
    assert caught.value.url == "https://huggingface.co/papers/date/2026-03-04"


def test_empty_data_while_the_page_lists_papers_is_an_error_not_an_empty_day():
    cards = '<a href="/papers/2603.01877">One</a><a href="/papers/2603.02210">Two</a>'
    page = _page(html.escape(json.dumps({"dailyPapers": []})), cards)
    with pytest.raises(SourceError, match="page links 2 papers but its dailyPapers data is empty"):
        hf_page.parse(page)


def test_page_over_the_size_cap_is_refused(monkeypatch):
    monkeypatch.setattr(hf_page.http, "MAX_RESPONSE_BYTES", 50)
    with pytest.raises(SourceError, match="over the 50-byte cap"):
        hf_page.parse("<html>" + " " * 100 + "</html>")


def test_fetch_tries_the_older_url_when_the_new_one_is_missing(fixture_text):
    calls = []

    def fake_fetch(url, *, source, not_found_ok=False, params=None, **options):
        calls.append((url, params))
        if url.endswith("/papers/date/2026-03-04"):
            return None
        return fixture_text("hf_page_escaped.html")

    records = hf_page.fetch(date(2026, 3, 4), fetch_text=fake_fetch)
    assert len(records) == 3
    assert calls == [
        ("https://huggingface.co/papers/date/2026-03-04", None),
        ("https://huggingface.co/papers", {"date": "2026-03-04"}),
    ]
