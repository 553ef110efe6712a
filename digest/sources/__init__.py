"""
Paper sources. Each module has a pure ``parse(text)`` and a thin ``fetch(day)``:

* ``hf_api``  - Hugging Face Daily Papers JSON API (primary)
* ``hf_page`` - Hugging Face papers page (fallback when the API fails)
* ``arxiv``   - arXiv Atom API, merged with Hugging Face's records by id

``fetch_sources`` is what the nightly run uses: every configured source, each
failure kept apart so one failing source does not silence the others.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date

from digest.sources import arxiv, hf_api, hf_page
from digest.sources.base import (
    SOURCE_ARXIV,
    SOURCE_HF_API,
    SOURCE_HF_PAGE,
    SOURCES,
    PaperRecord,
    SourceError,
)

PARSERS: dict[str, Callable[..., list[PaperRecord]]] = {
    SOURCE_HF_API: hf_api.parse,
    SOURCE_HF_PAGE: hf_page.parse,
    SOURCE_ARXIV: arxiv.parse,
}
FETCHERS: dict[str, Callable[..., list[PaperRecord]]] = {
    SOURCE_HF_API: hf_api.fetch,
    SOURCE_HF_PAGE: hf_page.fetch,
    SOURCE_ARXIV: arxiv.fetch,
}

__all__ = [
    "FETCHERS",
    "PARSERS",
    "SOURCES",
    "PaperRecord",
    "SourceError",
    "detect_format",
    "fetch",
    "fetch_sources",
    "fetch_with_fallback",
    "parse_saved",
]

logger = logging.getLogger(__name__)


def detect_format(text: str, *, name: str = "") -> str:
    """Which source a saved response came from: "hf", "hf-page" or "arxiv".

    Judged by the first characters only: a JSON array is the API, an Atom
    document is arXiv, an HTML document is the papers page.
    """
    head = text.lstrip("\ufeff \t\r\n")[:2048].lower()
    if head.startswith("["):
        return SOURCE_HF_API
    if head.startswith(("<?xml", "<feed")) and "<feed" in head:
        return SOURCE_ARXIV
    if head.startswith(("<!doctype html", "<html", "<!--", "<head", "<body", "<div")):
        return SOURCE_HF_PAGE
    raise SourceError(
        "file",
        name,
        "unrecognised format: expected a Hugging Face API JSON array, "
        "a Hugging Face papers page or an arXiv Atom feed",
    )


def parse_saved(text: str, *, name: str = "") -> tuple[str, list[PaperRecord]]:
    """Detect a saved response's source and parse it."""
    source = detect_format(text, name=name)
    return source, PARSERS[source](text, url=name)


def fetch(source: str, day: date, **options) -> list[PaperRecord]:
    if source not in FETCHERS:
        raise ValueError(f"unknown source {source!r}; choose one of {', '.join(SOURCES)}")
    return FETCHERS[source](day, **options)


def fetch_with_fallback(source: str, day: date, **options) -> tuple[str, list[PaperRecord]]:
    """One source's records for a day, and which source gave them.

    "hf" is the JSON API with the papers page as fallback: when the API fails
    the page is tried, and only when both fail is the API's error raised.
    """
    if source != SOURCE_HF_API:
        return source, fetch(source, day, **options)
    try:
        return SOURCE_HF_API, fetch(SOURCE_HF_API, day, **options)
    except SourceError as api_error:
        logger.warning("%s; falling back to the papers page", api_error)
        try:
            return SOURCE_HF_PAGE, fetch(SOURCE_HF_PAGE, day, **options)
        except SourceError as page_error:
            raise SourceError(
                SOURCE_HF_API,
                api_error.url,
                f"{api_error.detail}; the papers page failed too: {page_error}",
            ) from page_error


@dataclass
class Harvest:
    """What a night's sources gave: the records of those that answered, the errors of the others."""

    records: list[PaperRecord] = field(default_factory=list)
    # source asked for -> (source that answered, e.g. "hf-page" for "hf", number of records)
    answered: dict[str, tuple[str, int]] = field(default_factory=dict)
    failures: list[SourceError] = field(default_factory=list)


def fetch_sources(
    day: date, names: Sequence[str], *, arxiv_categories: Iterable[str] | None = None
) -> Harvest:
    """Fetch every named source for a day. A source that fails is recorded, not raised."""
    harvest = Harvest()
    for name in dict.fromkeys(names):
        options = {"categories": tuple(arxiv_categories)} if name == SOURCE_ARXIV and arxiv_categories else {}
        try:
            used, records = fetch_with_fallback(name, day, **options)
        except SourceError as exc:
            logger.error("source %s failed for %s: %s", name, day, exc)
            harvest.failures.append(exc)
            continue
        harvest.answered[name] = (used, len(records))
        harvest.records.extend(records)
    return harvest
