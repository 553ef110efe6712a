import json
import logging
from datetime import UTC, date, datetime

import pytest

from digest.sources import hf_api
from digest.sources.base import SourceError


def test_parse_2024_items_normalises_whitespace_and_ids(fixture_text):
    records = hf_api.parse(fixture_text("hf_api_2024.json"))
    by_id = {r.arxiv_id: r for r in records}
    assert set(by_id) == {"2403.07311", "2403.06955", "2403.07002"}
    paper = by_id["2403.07311"]
    assert paper.title == "Sparse Mixture of Adapters for Multi-Task Instruction Tuning"
    assert "\n" not in paper.abstract and "  " not in paper.abstract
    assert paper.abstract.startswith(
        "Instruction tuning on many tasks at once causes negative interference between"
    )
    assert paper.authors == ("Mara Lindqvist", "Tobi Adeyemi")
    assert paper.featured_on == date(2024, 3, 12)
    assert paper.published_at == datetime(2024, 3, 11, 17, 58, 2, tzinfo=UTC)
    assert paper.upvotes == 7 and paper.num_comments == 1
    assert paper.ai_keywords == () and paper.github_repo == ""
    assert paper.source == "hf"


def test_parse_keeps_response_order_which_is_not_by_upvotes(fixture_text):
    upvotes = [r.upvotes for r in hf_api.parse(fixture_text("hf_api_2024.json"))]
    assert upvotes == [7, 41, 19]


def test_featured_day_comes_from_submitted_on_daily_at_not_item_published_at(fixture_text):
    records = {r.arxiv_id: r for r in hf_api.parse(fixture_text("hf_api_2026.json"))}
    # The item-level publishedAt is 2026-03-02 (the arXiv date) for this one.
    assert records["2603.01877"].featured_on == date(2026, 3, 4)


def test_featured_day_falls_back_to_the_requested_day_when_missing(fixture_text):
    records = {r.arxiv_id: r for r in hf_api.parse(fixture_text("hf_api_2024.json"), day=date(2024, 3, 12))}
    assert records["2403.07002"].featured_on == date(2024, 3, 12)


def test_parse_2026_items_reads_the_newer_fields(fixture_text):
    records = {r.arxiv_id: r for r in hf_api.parse(fixture_text("hf_api_2026.json"))}
    paper = records["2603.01877"]
    assert paper.ai_keywords == ("LLM agents", "tool use", "reinforcement learning", "cost budget")
    assert paper.ai_summary.startswith("Agents learn to plan")
    assert paper.github_repo == "https://github.com/example-lab/budget-agents"
    assert paper.github_stars == 88
    assert paper.project_page == "https://example-lab.github.io/budget-agents/"
    assert paper.thumbnail_url.endswith("2603.01877.png")


def test_scraped_text_is_kept_as_text_and_unsafe_links_are_dropped(fixture_text):
    records = {r.arxiv_id: r for r in hf_api.parse(fixture_text("hf_api_2026.json"))}
    assert records["2603.02210"].github_repo == ""  # was javascript:
    assert records["2603.00415"].title.startswith("<script>")  # stored verbatim, escaped on output


def test_empty_array_is_an_empty_day_not_an_error():
    assert hf_api.parse("[]") == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[{", "not valid JSON"),
        ("<html>rate limited</html>", "not valid JSON"),
        ('{"papers": []}', "expected a JSON array"),
        ('{"error": "Invalid date"}', "API answered an error: Invalid date"),
        ("[1, 2, 3]", "none of the 3 items had a usable paper"),
        ('[{"title": "no paper object"}]', "none of the 1 items"),
        ('[{"paper": {"id": 2401.01234, "title": "wrong type"}}]', "none of the 1 items"),
        ("[" * 100000, "not valid JSON"),
    ],
)
def test_unrecognised_responses_raise_a_clear_source_error(text, message):
    with pytest.raises(SourceError, match=message) as caught:
        hf_api.parse(text, url="https://huggingface.co/api/daily_papers?date=2024-03-12")
    assert caught.value.source == "hf"
    assert caught.value.url.endswith("date=2024-03-12")


def test_bad_items_are_skipped_with_a_log_and_the_rest_kept(fixture_text, caplog):
    items = json.loads(fixture_text("hf_api_2026.json"))
    items.insert(1, {"paper": {"id": "not-an-id", "title": "x"}})
    items.append({"paper": {"id": "2603.09999"}})  # no title anywhere
    items[0]["paper"]["upvotes"] = "many"  # wrong type: just that field falls back
    with caplog.at_level(logging.WARNING):
        records = hf_api.parse(json.dumps(items))
    assert [r.arxiv_id for r in records] == ["2603.01877", "2603.02210", "2603.00415"]
    assert records[0].upvotes == 0
    assert "not an arXiv id" in caplog.text and "has no title" in caplog.text


def test_duplicate_ids_within_one_response_keep_the_first_and_log(fixture_text, caplog):
    items = json.loads(fixture_text("hf_api_2026.json"))
    duplicate = json.loads(json.dumps(items[0]))
    duplicate["paper"]["id"] = "2603.01877v2"
    items.append(duplicate)
    with caplog.at_level(logging.WARNING):
        records = hf_api.parse(json.dumps(items))
    assert [r.arxiv_id for r in records].count("2603.01877") == 1
    assert "duplicate id 2603.01877" in caplog.text


def test_response_over_the_size_cap_is_refused(monkeypatch):
    monkeypatch.setattr(hf_api.http, "MAX_RESPONSE_BYTES", 100)
    with pytest.raises(SourceError, match="over the 100-byte cap"):
        hf_api.parse("[" + " " * 200 + "]")


def test_fetch_pages_from_zero_until_an_empty_page(fixture_text):
    pages = {0: fixture_text("hf_api_2024.json"), 1: fixture_text("hf_api_2026.json"), 2: "[]"}
    calls = []

    def fake_fetch(url, *, source, params, **options):
        calls.append(params)
        return pages[params["p"]]

    records = hf_api.fetch(date(2024, 3, 12), fetch_text=fake_fetch)
    assert [c["p"] for c in calls] == [0, 1, 2]
    assert calls[0] == {"date": "2024-03-12", "limit": 100, "p": 0}
    assert len(records) == 6


def test_fetch_stops_when_the_api_repeats_a_page(fixture_text):
    def fake_fetch(url, *, source, params, **options):
        return fixture_text("hf_api_2024.json")

    assert len(hf_api.fetch(date(2024, 3, 12), fetch_text=fake_fetch)) == 3


def test_fetch_of_an_empty_day_returns_nothing():
    assert hf_api.fetch(date(2024, 3, 16), fetch_text=lambda *a, **k: "[]") == []


def test_fetch_raises_when_a_later_page_is_broken_so_no_partial_day(fixture_text):
    pages = {0: fixture_text("hf_api_2024.json"), 1: "<html>oops</html>"}
    with pytest.raises(SourceError, match="not valid JSON") as caught:
        hf_api.fetch(date(2024, 3, 12), fetch_text=lambda url, *, params, **k: pages[params["p"]])
    assert "p=1" in caught.value.url
