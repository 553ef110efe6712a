"""
The one text analyser: how the tagger and the interest matcher read words.

Both sides of every comparison (a paper's text and a topic phrase or a
reader's interest) go through the same steps, so they always agree:

1. Lower-case and fold accents ("Schrödinger" = "schrodinger").
2. Split into words. A hyphenated word yields its parts and remembers the
   joined form, so "multi-modal" matches "multimodal" and "chain-of-thought"
   matches "chain of thought".
3. Acronym plurals lose their "s" ("LLMs" = "LLM", "VLMs" = "VLM"), then every
   word is stemmed with the Snowball English stemmer (PyStemmer), so
   "evaluating" = "evaluation" and "selecting" = "selection".
4. Aliases: an admin-editable map (``digest.models.TermAlias``) folds an
   acronym and its expansions into one term, so "RL" meets "reinforcement
   learning" and "RAG" meets "retrieval-augmented generation"; it also joins
   word forms the stemmer keeps apart ("browser" = "browsing").

The result is a list of stems (with the joined hyphen forms beside them), which
the tagger scans for phrases and the interest matcher counts for BM25F.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import Stemmer

_WORD = re.compile(r"[A-Za-z0-9]+(?:[-'][A-Za-z0-9]+)*|[.,;:!?()\[\]|]")
_ACRONYM_PLURAL = re.compile(r"^[A-Z][A-Za-z0-9]*[A-Z0-9]s$")
PUNCTUATION = frozenset(".,;:!?()[]|")

# Function words dropped from interests (a paper's text keeps them, so phrases
# still line up); "papers about X" asks for X.
STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "for",
        "from",
        "how",
        "in",
        "into",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "over",
        "the",
        "their",
        "this",
        "that",
        "to",
        "toward",
        "towards",
        "using",
        "via",
        "with",
        "without",
        "about",
        "new",
        "novel",
        "based",
        "approach",
        "approaches",
        "method",
        "methods",
        "model",
        "models",
        "study",
        "studies",
        "work",
        "works",
        "anything",
        "stuff",
        "like",
        "paper",
        "papers",
        "what",
        "which",
        "who",
        "whose",
        "happen",
        "happens",
        "happening",
        "make",
        "making",
        "made",
        "inside",
        "within",
        "between",
        "all",
        "any",
        "some",
        "more",
        "most",
        "better",
        "improving",
        "improve",
        "i",
        "me",
        "my",
        "we",
        "our",
        "you",
        "your",
        "interested",
        "interest",
        "want",
        "news",
        "latest",
        "recent",
    ]
)


# Protected words, left unstemmed (as search engines keep them beside a Snowball
# stemmer): Snowball reads "interpretability", "interpretable" and the
# "interpretation" of results all as "interpret", and only the first is a field.
PROTECTED_WORDS = frozenset({"interpretability", "interpretable", "explainability", "explainable"})


def fold(text: str) -> str:
    """Accents folded to ASCII; case kept (acronyms are recognised before lower-casing)."""
    if not text.isascii():
        text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return text


@dataclass(frozen=True)
class Analysed:
    """A text as stems. ``compounds`` maps the position of a hyphenated word's
    first part to (joined stem, number of parts)."""

    stems: list[str]
    compounds: dict[int, tuple[str, int]]
    raw: list[str]


@dataclass(eq=False)
class Analyzer:
    """Stemmer plus alias map. Build it once per alias set (see ``current_analyzer``)."""

    aliases: Sequence[tuple[str, Sequence[str]]] = ()
    _stemmer: Stemmer.Stemmer = field(init=False, repr=False)
    _stems: dict[str, str] = field(init=False, repr=False, default_factory=dict)
    # first stem -> [(key, canonical)], longest key first
    _alias_index: dict[str, list[tuple[tuple[str, ...], str]]] = field(init=False, repr=False)
    _acronyms: frozenset[str] = field(init=False, repr=False, default=frozenset())

    def __post_init__(self) -> None:
        self._stemmer = Stemmer.Stemmer("english")
        self._acronyms = frozenset(
            term.lower() for term, _ in self.aliases if term.isalnum() and sum(c.isupper() for c in term) >= 2
        )
        self._alias_index = {}
        entries: dict[tuple[str, ...], str] = {}
        for term, expansions in self.aliases:
            term_key = tuple(self._plain_stems(term))
            if not term_key:
                continue
            canonical = "_".join(term_key)
            for text in (term, *expansions):
                for key in self._keys(text):
                    if key:
                        entries.setdefault(key, canonical)
        for key, canonical in entries.items():
            if key == (canonical,):
                continue
            self._alias_index.setdefault(key[0], []).append((key, canonical))
        for found in self._alias_index.values():
            found.sort(key=lambda entry: -len(entry[0]))

    @property
    def signature(self) -> tuple:
        return tuple((term, tuple(expansions)) for term, expansions in self.aliases)

    def stem(self, word: str) -> str:
        """Stem one lower-case word (cached; PyStemmer is fast, a dict is faster)."""
        stemmed = self._stems.get(word)
        if stemmed is None:
            if len(word) <= 2 or not word.isalpha() or word in PROTECTED_WORDS:
                stemmed = word
            elif len(word) >= 6 and word.endswith(("er", "ers")):
                # Agent nouns keep their ending: a "tokenizer" is not "token", an "encoder" not "encoding".
                stemmed = word[:-1] if word.endswith("s") else word
            else:
                stemmed = self._stemmer.stemWord(word)
            self._stems[word] = stemmed
        return stemmed

    def _words(self, text: str) -> list[str]:
        """Lower-case words; an acronym (all capitals) is marked with a leading "=" so it is not stemmed."""
        out = []
        acronyms = self._acronyms
        for word in _WORD.findall(fold(text or "")):
            if len(word) > 2 and word[-1] == "s":
                head = word[:-1]
                # "LLMs" -> "LLM", "LoRAs" -> "LoRA", and "llms" when "LLM" is a known acronym.
                if (
                    sum(c.isupper() for c in head) >= 2 and not head[-1].islower()
                ) or head.lower() in acronyms:
                    word = head
            lowered = word.lower().replace("'", "")
            if len(word) > 1 and word.isupper() and "-" not in word:
                lowered = "=" + lowered  # "AIME" is not "aim"
            out.append(lowered)
        return out

    def _stem_word(self, word: str) -> str:
        return word[1:] if word[0] == "=" else self.stem(word)

    def _plain_stems(self, text: str) -> list[str]:
        return [
            self._stem_word(part)
            for word in self._words(text)
            if word not in PUNCTUATION
            for part in word.split("-")
        ]

    def _keys(self, text: str) -> list[tuple[str, ...]]:
        """A phrase as stems: hyphens as spaces, and (when different) hyphenated words joined."""
        words = [word for word in self._words(text) if word not in PUNCTUATION]
        spaced = tuple(self._stem_word(part) for word in words for part in word.split("-") if part)
        joined = tuple(self._stem_word(word.replace("-", "")) for word in words if word)
        return [spaced] if joined == spaced else [spaced, joined]

    def analyse(self, text: str) -> Analysed:
        """A text as stems, with aliases folded into their canonical term."""
        stems: list[str] = []
        raw: list[str] = []
        compounds: dict[int, tuple[str, int]] = {}
        for word in self._words(text):
            if "-" in word:
                parts = [part for part in word.split("-") if part]
                if len(parts) > 1:
                    compounds[len(stems)] = (self.stem("".join(parts)), len(parts))
                for part in parts:
                    raw.append(part)
                    stems.append(self.stem(part))
            else:
                raw.append(word.lstrip("="))
                stems.append(word if word in PUNCTUATION else self._stem_word(word))
        if self._alias_index:
            stems, raw, compounds = self._fold_aliases(stems, raw, compounds)
        return Analysed(stems=stems, compounds=compounds, raw=raw)

    def _fold_aliases(
        self, stems: list[str], raw: list[str], compounds: dict[int, tuple[str, int]]
    ) -> tuple[list[str], list[str], dict[int, tuple[str, int]]]:
        index = self._alias_index
        out_stems: list[str] = []
        out_raw: list[str] = []
        out_compounds: dict[int, tuple[str, int]] = {}
        position, end = 0, len(stems)
        while position < end:
            replaced = False
            compound = compounds.get(position)
            if compound is not None:
                for key, canonical in index.get(compound[0], ()):
                    if len(key) == 1:
                        out_stems.append(canonical)
                        out_raw.append(canonical)
                        position += compound[1]
                        replaced = True
                        break
            if not replaced:
                for key, canonical in index.get(stems[position], ()):
                    if tuple(stems[position : position + len(key)]) == key:
                        out_stems.append(canonical)
                        out_raw.append(canonical)
                        position += len(key)
                        replaced = True
                        break
            if not replaced:
                if compound is not None:
                    out_compounds[len(out_stems)] = compound
                out_stems.append(stems[position])
                out_raw.append(raw[position])
                position += 1
        return out_stems, out_raw, out_compounds

    def phrase_keys(self, phrase: str) -> list[tuple[str, ...]]:
        """Token keys for a phrase, exactly as ``analyse`` would read it in a text."""
        keys = []
        analysed = self.analyse(phrase)
        spaced = tuple(stem for stem in analysed.stems if stem not in PUNCTUATION)
        if spaced:
            keys.append(spaced)
        # The joined form of a hyphenated phrase ("multi-modal" -> "multimodal").
        if "-" in phrase:
            joined = self.analyse(phrase.replace("-", ""))
            key = tuple(stem for stem in joined.stems if stem not in PUNCTUATION)
            if key and key not in keys:
                keys.append(key)
        return keys

    def terms(self, text: str) -> list[str]:
        """Content stems of a text (for counting): no punctuation, joined hyphen forms added."""
        analysed = self.analyse(text)
        out = [stem for stem in analysed.stems if stem not in PUNCTUATION]
        out.extend(joined for joined, _ in analysed.compounds.values())
        return out


def parse_aliases(rows: Iterable[tuple[str, str | Sequence[str]]]) -> list[tuple[str, tuple[str, ...]]]:
    """(term, expansions) rows, expansions one per line (or a list), blank lines and # comments dropped."""
    parsed = []
    for term, expansions in rows:
        lines = expansions.splitlines() if isinstance(expansions, str) else list(expansions)
        kept = tuple(line.strip() for line in lines if line.strip() and not line.strip().startswith("#"))
        if term.strip():
            parsed.append((term.strip(), kept))
    return parsed


_DEFAULT: Analyzer | None = None


def default_analyzer() -> Analyzer:
    """The analyser for the shipped alias map, for code that runs without a database."""
    global _DEFAULT
    if _DEFAULT is None:
        from digest.tagging.taxonomy import DEFAULT_ALIASES

        _DEFAULT = Analyzer(parse_aliases((row["term"], row["expansions"]) for row in DEFAULT_ALIASES))
    return _DEFAULT


_CURRENT: tuple[object, Analyzer] | None = None
ALIAS_VERSION_KEY = "paperboy:term-aliases:version"


def current_analyzer() -> Analyzer:
    """The analyser for the aliases in the database.

    Kept per process and rebuilt when an alias is saved or deleted: the admin's
    save bumps a version number in the shared cache (Redis in production), so
    every worker sees the change on its next run.
    """
    global _CURRENT
    from django.core.cache import cache

    from digest.models import TermAlias

    version = cache.get(ALIAS_VERSION_KEY)
    if version is None:
        version = 1
        cache.add(ALIAS_VERSION_KEY, version, timeout=None)
    if _CURRENT is not None and _CURRENT[0] == version:
        return _CURRENT[1]
    rows = TermAlias.objects.filter(is_active=True).order_by("term").values_list("term", "expansions")
    analyzer = Analyzer(parse_aliases(rows))
    _CURRENT = (version, analyzer)
    return analyzer


def aliases_changed() -> None:
    """Invalidate every process's analyser (called when an alias is saved or deleted)."""
    global _CURRENT
    from django.core.cache import cache

    _CURRENT = None
    try:
        cache.incr(ALIAS_VERSION_KEY)
    except ValueError:
        cache.set(ALIAS_VERSION_KEY, 2, timeout=None)


# --- corpus statistics for BM25F ---------------------------------------------

FIELDS = ("title", "summary", "keywords", "abstract")


def field_terms(analyzer: Analyzer, texts: dict[str, str]) -> dict[str, list[str]]:
    """Each field's analysed terms: the paper's title, HF summary, HF keywords and abstract."""
    return {name: analyzer.terms(texts.get(name) or "") for name in FIELDS}


@dataclass
class CorpusStats:
    """Document frequencies and average field lengths over the stored papers.

    Kept in the database (``TermStat``, ``CorpusStat``) and updated as papers are
    ingested, so ranking reads them instead of recounting the archive per reader.
    """

    papers: int = 0
    words: dict[str, int] = field(default_factory=dict)  # field -> total words
    df: dict[str, int] = field(default_factory=dict)

    def idf(self, term: str) -> float:
        """BM25's IDF, never negative; a term no stored paper has gets the largest value."""
        import math

        n = self.df.get(term, 0)
        return math.log(1 + (self.papers - n + 0.5) / (n + 0.5))

    def average(self, name: str) -> float:
        return (self.words.get(name, 0) / self.papers) if self.papers else 0.0

    def add(self, terms: dict[str, list[str]], sign: int = 1) -> None:
        self.papers += sign
        for name in FIELDS:
            self.words[name] = self.words.get(name, 0) + sign * len(terms.get(name, ()))
        for term in {term for values in terms.values() for term in values}:
            self.df[term] = self.df.get(term, 0) + sign

    @classmethod
    def from_documents(
        cls, documents: Iterable[dict[str, str]], analyzer: Analyzer | None = None
    ) -> CorpusStats:
        analyzer = analyzer or default_analyzer()
        stats = cls()
        for texts in documents:
            stats.add(field_terms(analyzer, texts))
        return stats
