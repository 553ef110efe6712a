"""What a reader follows besides topics: arXiv categories and authors by name.

The same rules apply wherever such a list comes in (the forms, the services,
the admin through the model's validators), so bad input is refused with one
clear message and never stored.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from django.core.exceptions import ValidationError

from digest.authors import fold, parse_name
from digest.sources.arxiv_categories import canonical_category

MAX_CATEGORIES = 20
MAX_AUTHORS = 30
AUTHOR_MAX_LENGTH = 100
_SEPARATORS = re.compile(r"[\s,;]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def split_categories(raw: str) -> list[str]:
    """Codes as typed in a form: separated by commas, semicolons or spaces."""
    return [part for part in _SEPARATORS.split(raw or "") if part]


def split_authors(raw: str) -> list[str]:
    """Names as typed in a form: one per line or separated by semicolons.

    Commas stay inside a name, so "Bengio, Yoshua" is one name."""
    return [part for part in re.split(r"[\r\n;]+", raw or "") if part.strip()]


def clean_arxiv_categories(values: object) -> list[str]:
    """Known arXiv category codes in arXiv's spelling, each once; ValidationError otherwise."""
    if isinstance(values, str) or not isinstance(values, Iterable):
        raise ValidationError("arXiv categories must be a list of codes.", code="category_type")
    cleaned: list[str] = []
    unknown: list[str] = []
    for value in values:
        if not isinstance(value, str):
            raise ValidationError("arXiv categories must be a list of codes.", code="category_type")
        try:
            code = canonical_category(value)
        except ValueError:
            unknown.append(_CONTROL.sub("", value.strip())[:40])
            continue
        if code not in cleaned:
            cleaned.append(code)
    if unknown:
        listed = ", ".join(f"“{code}”" for code in unknown[:5])
        raise ValidationError(
            f"Not an arXiv category: {listed}. Use codes such as cs.CL, stat.ML or eess.AS "
            "(see arxiv.org/category_taxonomy).",
            code="category_unknown",
        )
    if len(cleaned) > MAX_CATEGORIES:
        raise ValidationError(f"Follow at most {MAX_CATEGORIES} arXiv categories.", code="category_count")
    return cleaned


def clean_author_names(values: object) -> list[str]:
    """Author names with spaces tidied, each once (ignoring case and accents); ValidationError otherwise."""
    if isinstance(values, str) or not isinstance(values, Iterable):
        raise ValidationError("Authors must be a list of names.", code="author_type")
    cleaned: list[str] = []
    seen: set[str] = set()
    for value in values:
        if not isinstance(value, str):
            raise ValidationError("Authors must be a list of names.", code="author_type")
        if _CONTROL.search(value.replace("\r", "").replace("\n", "")):
            raise ValidationError("Author names cannot contain control characters.", code="author_control")
        name = " ".join(value.split())
        if not name:
            continue
        if len(name) > AUTHOR_MAX_LENGTH:
            raise ValidationError(
                f"Keep each author name under {AUTHOR_MAX_LENGTH} characters "
                f"(one was {len(name)} characters long).",
                code="author_length",
            )
        parsed = parse_name(name)
        if parsed is None:
            raise ValidationError(f"“{name[:40]}” is not a name: it has no letters.", code="author_letters")
        folded = fold(" ".join((*parsed.given, parsed.surname)))
        if folded in seen:
            continue
        seen.add(folded)
        cleaned.append(name)
    if len(cleaned) > MAX_AUTHORS:
        raise ValidationError(f"Follow at most {MAX_AUTHORS} authors.", code="author_count")
    return cleaned


def validate_arxiv_categories(value: object) -> None:
    """Model validator: the stored list must already be clean."""
    if clean_arxiv_categories(value) != list(value):  # type: ignore[call-overload]  # a list by now
        raise ValidationError("List each arXiv category once, as arXiv writes it.", code="category_form")


def validate_author_names(value: object) -> None:
    """Model validator: the stored list must already be clean."""
    if clean_author_names(value) != list(value):  # type: ignore[call-overload]  # a list by now
        raise ValidationError("List each author once, with single spaces.", code="author_form")
