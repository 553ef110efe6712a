"""
Hugging Face Daily Papers JSON API, the primary source.

``GET https://huggingface.co/api/daily_papers?date=YYYY-MM-DD&limit=100&p=N``
answers a JSON array of items, paged from p=0 until a page is empty. Traps
this module handles:

* items are not sorted by upvotes (we never rely on order);
* the item-level ``publishedAt`` changed meaning over the years, so the
  featured day comes from ``paper.submittedOnDailyAt``;
* older titles and summaries carry hard line breaks and runs of spaces.

``parse_items`` is shared with the papers-page fallback, whose embedded
``dailyPapers`` array holds items of the same shape.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import date

from digest.sources import http
from digest.sources.base import (
    SOURCE_HF_API,
    PaperRecord,
    SourceError,
    clean_int,
    clean_str_list,
    clean_text,
    clean_url,
    normalise_arxiv_id,
    parse_timestamp,
)

logger = logging.getLogger(__name__)

API_URL = "https://huggingface.co/api/daily_papers"
PAGE_SIZE = 100
# A day has never had more than a few hundred papers; more pages than this
# means the API stopped honouring ``p`` and we would loop forever.
MAX_PAGES = 20


def parse(text: str, *, url: str = "", day: date | None = None) -> list[PaperRecord]:
    """Parse one API response. An empty array is an empty day, not an error."""
    if len(text) > http.MAX_RESPONSE_BYTES:
        raise SourceError(SOURCE_HF_API, url, f"response is over the {http.MAX_RESPONSE_BYTES}-byte cap")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise SourceError(SOURCE_HF_API, url, f"response is not valid JSON ({exc})") from None
    if isinstance(data, dict) and "error" in data:
        message = clean_text(str(data["error"]))[:200]
        raise SourceError(SOURCE_HF_API, url, f"API answered an error: {message}")
    if not isinstance(data, list):
        raise SourceError(SOURCE_HF_API, url, f"expected a JSON array of items, got {type(data).__name__}")
    return parse_items(data, source=SOURCE_HF_API, url=url, day=day)


def parse_items(items: list, *, source: str, url: str, day: date | None = None) -> list[PaperRecord]:
    """Records from daily-papers items; a bad item is logged and skipped.

    When there were items but none gave a record, the response is not what we
    think it is: that raises instead of passing for an empty day.
    """
    records: list[PaperRecord] = []
    seen: set[str] = set()
    for position, item in enumerate(items):
        try:
            record = parse_item(item, source=source, day=day)
        except ValueError as exc:
            logger.warning("%s: skipped item %d of %s: %s", source, position, url or "input", exc)
            continue
        if record.arxiv_id in seen:
            logger.warning(
                "%s: skipped item %d of %s: duplicate id %s",
                source,
                position,
                url or "input",
                record.arxiv_id,
            )
            continue
        seen.add(record.arxiv_id)
        records.append(record)
    if items and not records:
        raise SourceError(
            source, url, f"none of the {len(items)} items had a usable paper (need paper.id and paper.title)"
        )
    return records


def parse_item(item: object, *, source: str = SOURCE_HF_API, day: date | None = None) -> PaperRecord:
    """One daily-papers item to a record; raises ValueError naming what is wrong."""
    if not isinstance(item, dict):
        raise ValueError(f"item is a {type(item).__name__}, not an object")
    paper = item.get("paper")
    if not isinstance(paper, dict):
        raise ValueError("item has no 'paper' object")
    arxiv_id = normalise_arxiv_id(paper.get("id"))
    title = clean_text(paper.get("title")) or clean_text(item.get("title"))
    if not title:
        raise ValueError(f"paper {arxiv_id} has no title")

    featured = parse_timestamp(paper.get("submittedOnDailyAt"))
    return PaperRecord(
        arxiv_id=arxiv_id,
        title=title,
        abstract=clean_text(paper.get("summary")) or clean_text(item.get("summary")),
        authors=_authors(paper.get("authors")),
        published_at=parse_timestamp(paper.get("publishedAt")),
        featured_on=featured.date() if featured else day,
        upvotes=clean_int(paper.get("upvotes")),
        num_comments=clean_int(item.get("numComments")),
        github_repo=clean_url(paper.get("githubRepo") or item.get("githubRepo")),
        github_stars=_optional_int(paper.get("githubStars")),
        project_page=clean_url(paper.get("projectPage") or item.get("projectPage")),
        thumbnail_url=clean_url(item.get("thumbnail")),
        ai_keywords=clean_str_list(paper.get("ai_keywords")),
        ai_summary=clean_text(paper.get("ai_summary")),
        source=source,
    )


def _authors(value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    names = []
    for author in value:
        name = clean_text(author.get("name")) if isinstance(author, dict) else clean_text(author)
        if name:
            names.append(name)
    return tuple(names)


def _optional_int(value: object) -> int | None:
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return clean_int(value)


def fetch(
    day: date,
    *,
    fetch_text: Callable[..., str | None] = http.fetch_text,
    base_url: str = API_URL,
    page_size: int = PAGE_SIZE,
    max_pages: int = MAX_PAGES,
    **http_options,
) -> list[PaperRecord]:
    """All of one day's papers, page by page until a page is empty.

    Either the whole day comes back or SourceError is raised; a page that
    fails part way never yields a partial day.
    """
    records: list[PaperRecord] = []
    seen: set[str] = set()
    for page in range(max_pages):
        params = {"date": day.isoformat(), "limit": page_size, "p": page}
        url = f"{base_url}?date={day.isoformat()}&limit={page_size}&p={page}"
        text = fetch_text(base_url, source=SOURCE_HF_API, params=params, **http_options)
        page_records = parse(text or "[]", url=url, day=day)
        if not page_records:
            return records
        fresh = [record for record in page_records if record.arxiv_id not in seen]
        if not fresh:
            # The API ignored ``p`` and served a page we already have.
            logger.warning("%s: page %d repeated earlier papers; stopping", SOURCE_HF_API, page)
            return records
        seen.update(record.arxiv_id for record in fresh)
        records.extend(fresh)
    raise SourceError(SOURCE_HF_API, base_url, f"more than {max_pages} pages for {day}; paging did not end")
