"""
arXiv API (Atom), for the categories in settings.ARXIV_CATEGORIES.

arXiv asks clients for at most one request every three seconds; a process-wide
``Throttle`` enforces that across pages, retries and separate fetches. Its
records carry no upvotes or featured day: ingest merges them with Hugging
Face's by arXiv id, and they fill in categories and missing abstracts.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date

from digest.sources import http
from digest.sources.base import (
    SOURCE_ARXIV,
    PaperRecord,
    SourceError,
    clean_text,
    clean_url,
    normalise_arxiv_id,
    parse_timestamp,
)

logger = logging.getLogger(__name__)

API_URL = "https://export.arxiv.org/api/query"
DEFAULT_CATEGORIES = ("cs.CL", "cs.LG", "cs.CV", "cs.AI")
MIN_INTERVAL = 3.0  # seconds between requests, arXiv's published limit
PAGE_SIZE = 200
MAX_RESULTS = 3000
EMPTY_PAGE_RETRIES = 2  # arXiv sometimes serves an empty page mid-listing

ATOM = "{http://www.w3.org/2005/Atom}"
OPENSEARCH = "{http://a9.com/-/spec/opensearch/1.1/}"
ARXIV = "{http://arxiv.org/schemas/atom}"

_GITHUB = re.compile(r"https?://github\.com/[\w.-]+/[\w.-]+", re.IGNORECASE)


class Throttle:
    """Keeps calls to ``wait`` at least ``interval`` seconds apart."""

    def __init__(
        self,
        interval: float = MIN_INTERVAL,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.interval = interval
        self.clock = clock
        self.sleep = sleep
        self._last: float | None = None
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:
            if self._last is not None:
                remaining = self.interval - (self.clock() - self._last)
                if remaining > 0:
                    self.sleep(remaining)
            self._last = self.clock()


_throttle = Throttle()


@dataclass(frozen=True)
class FeedPage:
    records: list[PaperRecord]
    total: int
    entries: int


def parse(text: str, *, url: str = "") -> list[PaperRecord]:
    """Records from one Atom response."""
    return parse_feed(text, url=url).records


def parse_feed(text: str, *, url: str = "") -> FeedPage:
    if len(text) > http.MAX_RESPONSE_BYTES:
        raise SourceError(SOURCE_ARXIV, url, f"response is over the {http.MAX_RESPONSE_BYTES}-byte cap")
    # Atom from arXiv never declares a DTD; refusing one rules out entity tricks.
    if re.search(r"<!(DOCTYPE|ENTITY)", text, re.IGNORECASE):
        raise SourceError(SOURCE_ARXIV, url, "response declares a DTD or entities, which arXiv never sends")
    try:
        root = ET.fromstring(text.lstrip("\ufeff"))  # noqa: S314 - DTDs are refused above
    except ET.ParseError as exc:
        raise SourceError(SOURCE_ARXIV, url, f"response is not well-formed XML ({exc})") from None
    if root.tag != f"{ATOM}feed":
        raise SourceError(SOURCE_ARXIV, url, f"expected an Atom <feed>, got <{root.tag}>")

    entries = root.findall(f"{ATOM}entry")
    total = _int(root.findtext(f"{OPENSEARCH}totalResults"))
    if total is None:
        raise SourceError(SOURCE_ARXIV, url, "feed has no opensearch:totalResults")
    records: list[PaperRecord] = []
    seen: set[str] = set()
    for position, entry in enumerate(entries):
        entry_id = entry.findtext(f"{ATOM}id") or ""
        if "/api/errors" in entry_id:
            message = clean_text(entry.findtext(f"{ATOM}summary")) or "unspecified error"
            raise SourceError(SOURCE_ARXIV, url, f"arXiv answered an error: {message[:200]}")
        try:
            record = _entry(entry)
        except ValueError as exc:
            logger.warning("%s: skipped entry %d of %s: %s", SOURCE_ARXIV, position, url or "input", exc)
            continue
        if record.arxiv_id in seen:
            logger.warning(
                "%s: skipped duplicate entry %s in %s", SOURCE_ARXIV, record.arxiv_id, url or "input"
            )
            continue
        seen.add(record.arxiv_id)
        records.append(record)
    if entries and not records:
        raise SourceError(SOURCE_ARXIV, url, f"none of the {len(entries)} entries had a usable id and title")
    return FeedPage(records=records, total=total, entries=len(entries))


def _entry(entry: ET.Element) -> PaperRecord:
    arxiv_id = normalise_arxiv_id(entry.findtext(f"{ATOM}id") or "")
    title = clean_text(entry.findtext(f"{ATOM}title"))
    if not title:
        raise ValueError(f"entry {arxiv_id} has no title")
    abstract = clean_text(entry.findtext(f"{ATOM}summary"))
    primary = entry.find(f"{ARXIV}primary_category")
    categories = [primary.get("term", "")] if primary is not None else []
    categories += [element.get("term", "") for element in entry.findall(f"{ATOM}category")]
    comment = clean_text(entry.findtext(f"{ARXIV}comment"))
    github = _GITHUB.search(f"{comment} {abstract}")
    return PaperRecord(
        arxiv_id=arxiv_id,
        title=title,
        abstract=abstract,
        authors=tuple(
            name
            for name in (clean_text(a.findtext(f"{ATOM}name")) for a in entry.findall(f"{ATOM}author"))
            if name
        ),
        published_at=parse_timestamp(entry.findtext(f"{ATOM}published")),
        github_repo=clean_url(github.group(0).rstrip(".")) if github else "",
        categories=tuple(dict.fromkeys(clean_text(c) for c in categories if clean_text(c))),
        source=SOURCE_ARXIV,
    )


def _int(value: str | None) -> int | None:
    try:
        return int((value or "").strip())
    except ValueError:
        return None


def configured_categories() -> tuple[str, ...]:
    try:
        from django.conf import settings

        if settings.configured:
            return tuple(getattr(settings, "ARXIV_CATEGORIES", DEFAULT_CATEGORIES))
    except ImportError:  # pragma: no cover
        pass
    return DEFAULT_CATEGORIES


def categories_to_fetch(
    configured: Iterable[str], followed: dict[str, int], *, limit: int
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The categories one night's arXiv query asks for, and those left out.

    The configured ones come first, then the readers' categories, most followed
    first (ties by code), until ``limit``: one query stays short enough for
    arXiv's API, and its results under MAX_RESULTS."""
    wanted = list(dict.fromkeys(configured))
    wanted += sorted((c for c in followed if c not in wanted), key=lambda c: (-followed[c], c))
    limit = max(limit, 1)
    return tuple(wanted[:limit]), tuple(wanted[limit:])


def search_query(day: date, categories: Iterable[str]) -> str:
    cats = " OR ".join(f"cat:{category}" for category in categories)
    stamp = day.strftime("%Y%m%d")
    return f"({cats}) AND submittedDate:[{stamp}0000 TO {stamp}2359]"


def fetch(
    day: date,
    *,
    categories: Iterable[str] | None = None,
    fetch_text: Callable[..., str | None] = http.fetch_text,
    throttle: Throttle | None = None,
    base_url: str = API_URL,
    page_size: int = PAGE_SIZE,
    max_results: int = MAX_RESULTS,
    **http_options,
) -> list[PaperRecord]:
    """Papers submitted on ``day`` in the configured categories, all pages or nothing."""
    throttle = throttle or _throttle
    query = search_query(day, categories or configured_categories())
    records: list[PaperRecord] = []
    seen: set[str] = set()
    start = 0
    while True:
        params = {
            "search_query": query,
            "start": start,
            "max_results": page_size,
            "sortBy": "submittedDate",
            "sortOrder": "ascending",
        }
        url = f"{base_url}?start={start}&search_query={query}"
        for _ in range(EMPTY_PAGE_RETRIES + 1):
            text = fetch_text(
                base_url, source=SOURCE_ARXIV, params=params, before_attempt=throttle.wait, **http_options
            )
            page = parse_feed(text or "", url=url)
            if page.entries or start >= page.total:
                break
            logger.warning("%s: empty page at start=%d of %d; asking again", SOURCE_ARXIV, start, page.total)
        else:
            raise SourceError(
                SOURCE_ARXIV,
                url,
                f"feed reports {page.total} results but the page at start={start} is empty",
            )
        for record in page.records:
            if record.arxiv_id not in seen:
                seen.add(record.arxiv_id)
                records.append(record)
        start += page.entries
        if not page.entries or start >= page.total:
            return records
        if start >= max_results:
            logger.warning("%s: stopped at %d of %d results for %s", SOURCE_ARXIV, start, page.total, day)
            return records
