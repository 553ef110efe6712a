"""
Paper sources. Each module has a pure ``parse(text)`` and a thin ``fetch(day)``:

* ``hf_api``  - Hugging Face Daily Papers JSON API (primary)
* ``hf_page`` - Hugging Face papers page (fallback when the API fails)
* ``arxiv``   - arXiv Atom API, merged with Hugging Face's records by id
"""

from __future__ import annotations

from collections.abc import Callable
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
    "parse_saved",
]


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
