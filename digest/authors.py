"""Matching author names as readers type them against names as papers list them.

Pure functions, no Django. A name is folded (accents removed, case ignored,
punctuation dropped) and split into given names and a surname; "Bengio,
Yoshua" is read as "Yoshua Bengio". Two names match when their surnames are
equal and their given names agree position by position, where an initial
agrees with any full name starting with that letter ("Y. Bengio" and "Yoshua
Bengio"). An initial only stands for a full name when that is unambiguous:
if the papers at hand (or the followed name) give two different full first
names for the same surname and initial ("Yoshua Bengio" and "Yann Bengio"),
the initial matches neither, and only exact spellings match.
"""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

# Letters that do not decompose into a base letter and an accent.
_SPECIAL = str.maketrans({"ß": "ss", "æ": "ae", "ø": "o", "œ": "oe", "ł": "l", "đ": "d", "ð": "d", "þ": "th"})
_WORD = re.compile(r"[^\W\d_]+(?:[-'’][^\W\d_]+)*")


def fold(text: str) -> str:
    """Lower-case ASCII-ish text without accents: "Łukasz Kaiser" -> "lukasz kaiser"."""
    decomposed = unicodedata.normalize("NFKD", text.casefold().translate(_SPECIAL))
    return "".join(char for char in decomposed if not unicodedata.combining(char)).translate(_SPECIAL)


@dataclass(frozen=True)
class AuthorName:
    given: tuple[str, ...]
    surname: str

    @property
    def first(self) -> str:
        return self.given[0] if self.given else ""

    @property
    def first_is_initial(self) -> bool:
        return len(self.first) == 1

    @property
    def key(self) -> str:
        """Surname and first initial: names that could be the same person share it."""
        return f"{self.surname} {self.first[:1]}"


@lru_cache(maxsize=65536)
def parse_name(text: str) -> AuthorName | None:
    """Given names and surname of a name, or None when it holds no word."""
    head, comma, tail = text.partition(",")
    if comma and tail.strip() and not re.search(r"\b(jr|sr|ii|iii|iv)\b\.?\s*$", fold(tail.strip())):
        text = f"{tail} {head}"  # "Surname, Given" as bibliographies write it
    words = [word.replace("’", "'") for word in _WORD.findall(fold(text))]
    if not words:
        return None
    return AuthorName(given=tuple(words[:-1]), surname=words[-1])


def _agree(a: str, b: str) -> bool:
    if len(a) == 1 or len(b) == 1:
        return a[0] == b[0]
    return a == b


def compatible(a: AuthorName, b: AuthorName) -> bool:
    """Same surname, and given names that do not contradict each other."""
    if a.surname != b.surname:
        return False
    if not a.given or not b.given:
        return a.given == b.given
    return all(_agree(x, y) for x, y in zip(a.given, b.given, strict=False))


class AuthorIndex:
    """The authors of a set of papers, looked up by followed name.

    Built once per ranking window, so resolving initials sees every paper of
    the window: that is what "unambiguous" is judged against.
    """

    def __init__(self, papers: Iterable[tuple[int, Sequence[str]]]):
        # surname -> [(parsed name, as written, paper id)]
        self._by_surname: dict[str, list[tuple[AuthorName, str, int]]] = defaultdict(list)
        for paper_id, authors in papers:
            for written in authors:
                name = parse_name(written)
                if name is not None:
                    self._by_surname[name.surname].append((name, written, paper_id))
        self._cache: dict[str, dict[int, str]] = {}

    def papers_by(self, followed: str) -> dict[int, str]:
        """Paper id -> the matching author as the paper writes them."""
        found = self._cache.get(followed)
        if found is None:
            found = self._cache[followed] = self._lookup(followed)
        return found

    def _lookup(self, followed: str) -> dict[int, str]:
        wanted = parse_name(followed)
        if wanted is None:
            return {}
        entries = self._by_surname.get(wanted.surname, ())
        found: dict[int, str] = {}
        for name, written, paper_id in entries:
            if not compatible(wanted, name):
                continue
            if wanted.first_is_initial != name.first_is_initial and self._ambiguous(wanted, name, entries):
                continue
            found.setdefault(paper_id, written)
        return found

    @staticmethod
    def _ambiguous(
        wanted: AuthorName, name: AuthorName, entries: Sequence[tuple[AuthorName, str, int]]
    ) -> bool:
        """Whether the initial on one side could stand for more than one full first name."""
        short = wanted if wanted.first_is_initial else name
        full_names = {
            other.first
            for other in (wanted, *(entry[0] for entry in entries))
            if not other.first_is_initial and other.first and compatible(other, short)
        }
        return len(full_names) > 1
