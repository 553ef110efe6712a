"""
Hugging Face papers page, the fallback when the JSON API fails.

``https://huggingface.co/papers/date/YYYY-MM-DD`` (older links:
``/papers?date=YYYY-MM-DD``) is rendered by Svelte, and the data it hydrates
from sits in one attribute::

    <div class="SVELTE_HYDRATER contents" data-target="DailyPapers" data-props="…">

``data-props`` is an HTML-escaped JSON object whose ``dailyPapers`` array holds
items shaped like the API's. beautifulsoup4 reads the attribute (unescaping
entities, and coping with a re-serialised page where the attribute is
single-quoted raw JSON) and ``json.loads`` reads the value. The visible cards
carry no abstracts, so they are only counted, to tell an empty day from a page
whose data we failed to find.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import date

from bs4 import BeautifulSoup

from digest.sources import http
from digest.sources.base import SOURCE_HF_PAGE, PaperRecord, SourceError
from digest.sources.hf_api import parse_items

PAGE_URL = "https://huggingface.co/papers/date/{day}"
LEGACY_PAGE_URL = "https://huggingface.co/papers"

_PAPER_LINK = re.compile(r"^/papers/\d{4}\.\d{4,5}(?:v\d+)?/?$")


def parse(text: str, *, url: str = "", day: date | None = None) -> list[PaperRecord]:
    """Records from a saved or fetched papers page."""
    if len(text) > http.MAX_RESPONSE_BYTES:
        raise SourceError(SOURCE_HF_PAGE, url, f"page is over the {http.MAX_RESPONSE_BYTES}-byte cap")
    soup = BeautifulSoup(text, "html.parser")
    holder = soup.select_one('[data-target="DailyPapers"]')
    if holder is None:
        raise SourceError(SOURCE_HF_PAGE, url, 'no element with data-target="DailyPapers" on the page')
    raw = holder.get("data-props")
    if not isinstance(raw, str) or not raw.strip():
        raise SourceError(SOURCE_HF_PAGE, url, "the DailyPapers element has no data-props attribute")
    try:
        props = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise SourceError(SOURCE_HF_PAGE, url, f"data-props is not valid JSON ({exc})") from None
    if not isinstance(props, dict) or not isinstance(props.get("dailyPapers"), list):
        raise SourceError(SOURCE_HF_PAGE, url, "data-props has no 'dailyPapers' array")

    items = props["dailyPapers"]
    if not items:
        cards = _count_paper_links(soup)
        if cards:
            raise SourceError(
                SOURCE_HF_PAGE, url, f"page links {cards} papers but its dailyPapers data is empty"
            )
        return []
    return parse_items(items, source=SOURCE_HF_PAGE, url=url, day=day)


def _count_paper_links(soup: BeautifulSoup) -> int:
    hrefs = {a.get("href") for a in soup.find_all("a", href=True)}
    return sum(1 for href in hrefs if isinstance(href, str) and _PAPER_LINK.match(href))


def fetch(
    day: date,
    *,
    fetch_text: Callable[..., str | None] = http.fetch_text,
    **http_options,
) -> list[PaperRecord]:
    """One day's papers from the page; tries the older URL when the new one is 404."""
    url = PAGE_URL.format(day=day.isoformat())
    text = fetch_text(url, source=SOURCE_HF_PAGE, not_found_ok=True, **http_options)
    if text is None:
        url = f"{LEGACY_PAGE_URL}?date={day.isoformat()}"
        text = fetch_text(
            LEGACY_PAGE_URL, source=SOURCE_HF_PAGE, params={"date": day.isoformat()}, **http_options
        )
    return parse(text or "", url=url, day=day)
