"""
What every paper source shares: the record a parser returns, the error a
source raises, and the small cleaning helpers for untrusted scraped text.

Everything here is pure Python with no Django import, so parsers can be
tested and used on saved text without settings.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, date, datetime

SOURCE_HF_API = "hf"
SOURCE_HF_PAGE = "hf-page"
SOURCE_ARXIV = "arxiv"
SOURCES = (SOURCE_HF_API, SOURCE_HF_PAGE, SOURCE_ARXIV)

# Longest URL kept from a source; anything longer is dropped rather than cut,
# because a cut URL points somewhere else.
MAX_URL_LENGTH = 500


class SourceError(Exception):
    """A source answered with something we do not recognise, or not at all.

    The nightly run stops the whole day on this error (nothing partial is
    written) and reports it to admins, so the message names the source, the
    URL and what was missing.
    """

    def __init__(self, source: str, url: str, detail: str):
        self.source = source
        self.url = url
        self.detail = detail
        super().__init__(f"{source}: {detail} (url: {url or 'n/a'})")


@dataclass(frozen=True)
class PaperRecord:
    """One paper as a source describes it, cleaned but not yet stored."""

    arxiv_id: str
    title: str
    abstract: str = ""
    authors: tuple[str, ...] = ()
    published_at: datetime | None = None
    featured_on: date | None = None
    upvotes: int = 0
    num_comments: int = 0
    github_repo: str = ""
    project_page: str = ""
    thumbnail_url: str = ""
    ai_keywords: tuple[str, ...] = ()
    ai_summary: str = ""
    categories: tuple[str, ...] = ()
    source: str = SOURCE_HF_API
    github_stars: int | None = None


# New-style ids (0704.0001 onwards; five digits after the dot since 2015) and
# old-style archive ids (hep-th/9901001, cs/0112017, math.AG/0601001).
_NEW_ID = re.compile(r"^(\d{4}\.\d{4,5})(?:v\d+)?$")
_OLD_ID = re.compile(r"^([a-z][a-z\-]*(?:\.[A-Z]{2})?/\d{7})(?:v\d+)?$")
_ID_PREFIXES = re.compile(
    r"^(?:https?://(?:www\.|export\.)?arxiv\.org/(?:abs|pdf)/|https?://huggingface\.co/papers/|arxiv:)",
    re.IGNORECASE,
)


def normalise_arxiv_id(raw: object) -> str:
    """Return the bare arXiv id without version suffix, or raise ValueError.

    Accepts "2401.01234", "2401.01234v3", "arXiv:2401.01234", abs/pdf URLs and
    old-style ids such as "hep-th/9901001v2".
    """
    if not isinstance(raw, str):
        raise ValueError(f"arXiv id must be a string, got {type(raw).__name__}")
    text = _ID_PREFIXES.sub("", raw.strip())
    text = text.removesuffix(".pdf").strip("/")
    for pattern in (_NEW_ID, _OLD_ID):
        match = pattern.match(text)
        if match:
            return match.group(1)
    raise ValueError(f"not an arXiv id: {raw[:60]!r}")


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SPACES = re.compile(r"\s+")


def clean_text(value: object) -> str:
    """Collapse hard line breaks and runs of spaces into single spaces.

    Older Hugging Face titles and summaries are wrapped at ~80 columns. NUL and
    other control characters are removed too: PostgreSQL rejects NUL in text.
    Non-strings become "" so a wrong type costs one field, not the paper.
    """
    if not isinstance(value, str):
        return ""
    value = unicodedata.normalize("NFC", value)
    value = _CONTROL.sub(" ", value)
    return _SPACES.sub(" ", value).strip()


normalise_whitespace = clean_text


def clean_url(value: object) -> str:
    """Keep only plain http(s) URLs; anything else (javascript:, data:, junk) becomes ""."""
    text = clean_text(value)
    if not text or len(text) > MAX_URL_LENGTH or " " in text:
        return ""
    if not re.match(r"^https?://[^/\s]+", text, re.IGNORECASE):
        return ""
    return text


def clean_int(value: object, default: int = 0) -> int:
    """A non-negative int from a JSON number; booleans and junk give the default."""
    if isinstance(value, bool):
        return default
    if isinstance(value, int):
        return max(value, 0)
    if isinstance(value, float) and value == value and abs(value) < 2**53:
        return max(int(value), 0)
    return default


def clean_str_list(value: object, *, limit: int = 200) -> tuple[str, ...]:
    """Clean, de-duplicated strings from a JSON list; other types give ()."""
    if not isinstance(value, list):
        return ()
    seen: dict[str, None] = {}
    for item in value[:limit]:
        text = clean_text(item)
        if text:
            seen.setdefault(text, None)
    return tuple(seen)


def parse_timestamp(value: object) -> datetime | None:
    """An aware UTC datetime from an ISO 8601 string ("...Z" included), or None."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)
