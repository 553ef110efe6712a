"""One paper as every reader-facing surface sees it: the email, the web pages and the feed.

`PaperView` is read once per night (or per page) from the database by
`digest.selectors.load_papers`, with scraped text made inert and scraped URLs
kept only when they are plain http(s) links.
"""

import re
from dataclasses import dataclass
from datetime import date

from digest.models import PaperLinks
from digest.ranking import Candidate

# Placeholders in a rendered digest: PBX<KEY>PBX, filled per reader.
PLACEHOLDER = re.compile(r"PBX([A-Z]+[0-9]*)PBX")
# Plain http(s) links; braces and stray percent signs are refused as well, since
# they would read as an ESP's template markup (a real link percent-encodes them).
_SAFE_URL = re.compile(r"^https?://(?:[^\s\"'<>\\{}%]|%[0-9A-Fa-f]{2})+$", re.IGNORECASE)
# The TL;DR is one line: a sentence, cut on a word boundary past this length.
TLDR_MAX_CHARS = 90
# A sentence ends at . ! or ? followed by a space and a capital letter, a digit or an opening quote.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9“\"(])")
# ...but not after abbreviations that papers use mid-sentence.
_ABBREVIATIONS = ("e.g.", "i.e.", "et al.", "vs.", "cf.", "Fig.", "Eq.", "approx.", "resp.")


def safe_url(url: str | None) -> str:
    """A scraped URL, only if it is a plain http(s) link (never javascript: or data:)."""
    url = (url or "").strip()
    return url if _SAFE_URL.match(url) else ""


def inert(text: str) -> str:
    """Scraped text can never smuggle in a placeholder of ours."""
    return PLACEHOLDER.sub(lambda m: m.group(0).replace("PBX", "PB\u200bX"), text or "")


def first_sentence(text: str) -> str:
    """The first sentence of an abstract, or the whole text when it has no sentence end."""
    text = " ".join((text or "").split())
    for match in _SENTENCE_END.finditer(text):
        sentence = text[: match.start()]
        if not sentence.endswith(_ABBREVIATIONS):
            return sentence
    return text


def cut_on_word(text: str, limit: int = TLDR_MAX_CHARS) -> str:
    """Text no longer than `limit` characters, cut at the last whole word with an ellipsis."""
    text = " ".join((text or "").split())
    if len(text) <= limit:
        return text
    head = text[: limit - 1]
    if text[limit - 1] != " " and " " in head:
        # The cut fell inside a word: go back to the previous space.
        head = head[: head.rfind(" ")]
    return head.rstrip(" ,;:.-–—(") + "…"


def tldr(*, ai_summary: str, abstract: str, limit: int = TLDR_MAX_CHARS) -> str:
    """One line about a paper: Hugging Face's summary, else the abstract's first sentence."""
    source = ai_summary.strip() or first_sentence(abstract)
    return cut_on_word(source, limit)


@dataclass(frozen=True, kw_only=True)
class PaperView(Candidate, PaperLinks):
    """The ranking fields of `Candidate`, plus what the email and the pages show."""

    arxiv_id: str
    num_comments: int
    github_repo: str
    project_page: str
    thumbnail_url: str
    # The day that puts it in a window: featured on Hugging Face, else published on arXiv.
    day: date | None = None

    @property
    def tldr(self) -> str:
        return tldr(ai_summary=self.ai_summary, abstract=self.abstract)

    @property
    def authors_line(self) -> str:
        return authors_line(self.authors)


def authors_line(authors: tuple[str, ...]) -> str:
    if not authors:
        return "Unknown authors"
    if len(authors) <= 3:
        return ", ".join(authors)
    return f"{', '.join(authors[:3])} et al."
