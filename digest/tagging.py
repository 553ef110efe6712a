"""
Lexical topic tagger: fast, explainable, editable by admins, nothing to download.

How a paper is scored against a topic
-------------------------------------
1. Text is lower-cased, accents folded, and split into words; hyphenated
   words are split too ("chain-of-thought" matches "chain of thought") and
   also kept joined ("multi-modal" matches "multimodal"). Each word is reduced
   to a light stem so plurals match ("LLM agents" matches "LLM agent").
2. Each topic's phrases (see ``digest.taxonomy`` for the line syntax), its name
   and the short fragments of its description are matched against the title,
   the abstract and Hugging Face's ``ai_keywords``. Where phrases overlap the
   longest one wins, so "process reward model" counts for reasoning and not as
   "reward model" for alignment, and "code-switching" is not "code".
3. Evidence per phrase: 2.0 for the title, 1.0 for the keywords, 1.0 for the
   abstract plus 0.5 for each further mention (two at most), and 1.0 more when
   it appears in a sentence where the paper states its contribution ("we
   introduce …", "this paper presents …"). Strong phrases
   count fully, weak ones (``~``) half, counter-evidence (``-``) subtracts.
   Sentences that only say where code or data is available are ignored.
4. The topic's score is ``1 - 2 ** (-evidence / 2)``, in [0, 1). A topic is
   tagged when the score reaches THRESHOLD (0.5, that is evidence 2.0: a
   strong phrase in the title or in the contribution sentence, two different
   ones in the abstract, or one repeated three times) and at least one strong
   phrase matched. Weak words
   alone never tag a paper.

A compiled ``Tagger`` is cached per topic set, so tagging is a few dictionary
lookups per word: well over a thousand papers a second.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

THRESHOLD = 0.5
TITLE_WEIGHT = 2.0
KEYWORD_WEIGHT = 1.0
ABSTRACT_WEIGHT = 1.0
REPEAT_BONUS = 0.5
MAX_REPEATS = 2
CLAIM_BONUS = 1.0
STRONG = 1.0
WEAK = 0.5
COUNTER = -1.0
SCALE = 2.0  # evidence at which the score reaches one half

# Words too common in ML abstracts to mean a topic on their own. A topic's
# name or description fragment made of just one of these is not used as a
# phrase (the topic "Data" is not tagged on every paper that says "data").
GENERIC_WORDS = frozenset(
    {
        "model", "data", "learning", "method", "language", "system", "approach", "task",
        "generation", "evaluation", "training", "performance", "result", "network", "ai",
        "llm", "large", "deep", "neural", "framework", "analysis", "research", "benchmark",
        "new", "novel", "study",
    }
)  # fmt: skip
_FUNCTION_WORDS = frozenset(
    {"and", "or", "for", "of", "the", "with", "to", "in", "on", "a", "an", "by", "from", "as"}
)

_TOKEN = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*|[.,;:!?()\[\]|]")
_URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_BOILERPLATE_HINT = re.compile(r"https?://|www\.|availab|releas|open[- ]?sourc", re.IGNORECASE)
_AVAILABILITY = re.compile(
    r"\b(?:code|codes|implementation|weights|checkpoints|models?|data|datasets?|demo|resources)\b"
    r"[^.]{0,80}\b(?:available|released?|open[- ]?sourced?|publicly)\b"
    r"|\b(?:available|released?)\s+(?:at|on|via)\b",
    re.IGNORECASE,
)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_CLAIM = re.compile(
    r"\b(?:we|this paper|this work|in this (?:paper|work))\s+"
    r"(?:propose|introduce|present|develop|build|release)",
    re.IGNORECASE,
)
_DESCRIPTION_SPLIT = re.compile(r"[,;:()/]|\band\b|\bor\b")


@dataclass(frozen=True)
class TopicSpec:
    """The part of a topic the tagger reads; Topic model rows work the same way."""

    slug: str
    name: str = ""
    description: str = ""
    phrases: str | Sequence[str] = ""


def stem(word: str) -> str:
    """A deliberately light stemmer: plural endings only, applied to text and phrases alike."""
    if len(word) <= 3 or word[-1] != "s":
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("sses", "ches", "shes", "xes", "zes")):
        return word[:-2]
    if word.endswith(("ss", "us", "is")):
        return word
    return word[:-1]


def _fold(text: str) -> str:
    text = text.lower()
    if not text.isascii():
        text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return text


def strip_boilerplate(abstract: str) -> str:
    """Drop URLs and sentences that only say where code, data or weights are available."""
    if not _BOILERPLATE_HINT.search(abstract):
        return abstract
    kept = [
        sentence
        for sentence in _SENTENCE_END.split(abstract)
        if not _URL.search(sentence) and not _AVAILABILITY.search(sentence)
    ]
    return " ".join(kept)


class _Tokens:
    """A text as stems, plus the joined form of each hyphenated compound."""

    __slots__ = ("compounds", "raw", "stems")

    def __init__(self, text: str, stems_cache: dict[str, str]):
        raw: list[str] = []
        compounds: dict[int, tuple[str, int]] = {}
        for word in _TOKEN.findall(_fold(text)):
            if "-" in word:
                parts = word.split("-")
                compounds[len(raw)] = ("".join(parts), len(parts))
                raw.extend(parts)
            else:
                raw.append(word)
        stems = []
        for word in raw:
            stemmed = stems_cache.get(word)
            if stemmed is None:
                stemmed = stems_cache[word] = stem(word)
            stems.append(stemmed)
        self.raw = raw
        self.stems = stems
        self.compounds = compounds


def _parse_phrase_line(line: str) -> tuple[str, float] | None:
    line = line.strip()
    if not line or line.startswith("#"):
        return None
    weight = STRONG
    if line[0] == "~":
        weight, line = WEAK, line[1:]
    elif line[0] == "-":
        weight, line = COUNTER, line[1:]
    line = line.strip()
    return (line, weight) if line else None


def _variants(phrase: str) -> list[tuple[str, ...]]:
    """Token keys for a phrase: hyphens as spaces, and hyphenated words joined."""
    words = _TOKEN.findall(_fold(phrase))
    spaced: list[str] = []
    joined: list[str] = []
    for word in words:
        spaced.extend(word.split("-"))
        joined.append(word.replace("-", ""))
    keys = [tuple(stem(w) for w in spaced)]
    joined_key = tuple(stem(w) for w in joined)
    if joined_key != keys[0]:
        keys.append(joined_key)
    return [key for key in keys if key]


def _phrase_lines(phrases: str | Sequence[str]) -> list[str]:
    if isinstance(phrases, str):
        return phrases.splitlines()
    return list(phrases)


def _derived_phrases(name: str, description: str) -> list[tuple[str, float]]:
    """The name as a strong phrase and short description fragments as weak ones."""
    derived: list[tuple[str, float]] = []
    candidates = [(name, STRONG)] + [
        (fragment, WEAK) for fragment in _DESCRIPTION_SPLIT.split(description or "")
    ]
    for text, weight in candidates:
        text = (text or "").strip()
        words = text.lower().split()
        if not words or len(words) > 3:
            continue
        if any(word in _FUNCTION_WORDS for word in words):
            continue
        if len(words) == 1 and stem(words[0].replace("-", "")) in GENERIC_WORDS:
            continue
        derived.append((text, weight))
    return derived


class Tagger:
    """Topic phrases compiled into a first-word index; build once per topic set."""

    def __init__(self, topics: Iterable[Any]):
        self.slugs: list[str] = []
        self._key_ids: dict[tuple[str, ...], int] = {}
        self._weights: list[dict[int, float]] = []
        self._prefixes: list[tuple[str, int]] = []
        self._suffixes: list[tuple[str, int]] = []
        self._stems: dict[str, str] = {}
        self._wild_cache: dict[str, int] = {}
        for index, topic in enumerate(topics):
            self.slugs.append(topic.slug)
            phrases: dict[str, float] = {}
            for text, weight in _derived_phrases(
                getattr(topic, "name", ""), getattr(topic, "description", "")
            ):
                phrases[text.lower()] = weight
            for line in _phrase_lines(getattr(topic, "phrases", "") or ""):
                parsed = _parse_phrase_line(line)
                if parsed:
                    phrases[parsed[0].lower()] = parsed[1]  # explicit lines win over derived ones
            for text, weight in phrases.items():
                self._add(text, index, weight)

        # first stem -> candidate keys, longest first
        self._index: dict[str, list[tuple[int, list[str], int]]] = {}
        for key, phrase_id in self._key_ids.items():
            self._index.setdefault(key[0], []).append((len(key), list(key), phrase_id))
        for candidates in self._index.values():
            candidates.sort(key=lambda candidate: -candidate[0])

    def _new_id(self) -> int:
        self._weights.append({})
        return len(self._weights) - 1

    def _add(self, text: str, topic: int, weight: float) -> None:
        if text.startswith("*") or text.endswith("*"):
            pattern = _fold(text.strip("*")).replace("-", "")
            if len(pattern) >= 3 and re.fullmatch(r"[a-z0-9]+", pattern):
                phrase_id = self._new_id()
                self._weights[phrase_id][topic] = weight
                (self._suffixes if text.startswith("*") else self._prefixes).append((pattern, phrase_id))
            return
        keys = _variants(text)
        if not keys:
            return
        known = next((self._key_ids[key] for key in keys if key in self._key_ids), None)
        phrase_id = self._new_id() if known is None else known
        for key in keys:
            self._key_ids.setdefault(key, phrase_id)
        self._weights[phrase_id][topic] = weight

    def _wildcard(self, word: str) -> int:
        found = self._wild_cache.get(word)
        if found is None:
            found = -1
            for prefix, phrase_id in self._prefixes:
                if word.startswith(prefix):
                    found = phrase_id
                    break
            else:
                for suffix, phrase_id in self._suffixes:
                    if word.endswith(suffix):
                        found = phrase_id
                        break
            self._wild_cache[word] = found
        return found

    def _scan(self, text: str) -> dict[int, int]:
        """Phrase id -> number of (non-overlapping, longest-first) matches in text."""
        hits: dict[int, int] = {}
        if not text:
            return hits
        tokens = _Tokens(text, self._stems)
        stems, compounds, raw = tokens.stems, tokens.compounds, tokens.raw
        index = self._index
        wildcards = bool(self._prefixes or self._suffixes)
        position, end = 0, len(stems)
        while position < end:
            best_length, best_id = 0, -1
            candidates = index.get(stems[position])
            if candidates:
                for length, key, phrase_id in candidates:
                    if length == 1 or stems[position : position + length] == key:
                        best_length, best_id = length, phrase_id
                        break
            compound = compounds.get(position)
            if compound is not None and compound[1] > best_length:
                joined = self._key_ids.get((self._stem(compound[0]),))
                if joined is not None:
                    best_length, best_id = compound[1], joined
                elif wildcards and (found := self._wildcard(compound[0])) >= 0:
                    best_length, best_id = compound[1], found
            if best_id < 0 and wildcards and (found := self._wildcard(raw[position])) >= 0:
                best_length, best_id = 1, found
            if best_id >= 0:
                hits[best_id] = hits.get(best_id, 0) + 1
                position += best_length
            else:
                position += 1
        return hits

    def _stem(self, word: str) -> str:
        stemmed = self._stems.get(word)
        if stemmed is None:
            stemmed = self._stems[word] = stem(word)
        return stemmed

    def evidence(
        self, title: str, abstract: str, keywords: Iterable[str] = ()
    ) -> dict[str, tuple[float, bool]]:
        """Slug -> (evidence, whether a strong phrase matched), for topics with any match."""
        title_hits = self._scan(title or "")
        keyword_hits = self._scan(" | ".join(keywords or ()))
        abstract = strip_boilerplate(abstract or "")
        abstract_hits = self._scan(abstract)
        # Phrases in the sentences where a paper states its own contribution
        # ("we introduce …", "this paper …") say more than passing mentions.
        claim_hits = self._scan(" ".join(s for s in _SENTENCE_END.split(abstract) if _CLAIM.search(s)))
        totals: dict[int, float] = {}
        strong: set[int] = set()
        for phrase_id in title_hits.keys() | keyword_hits.keys() | abstract_hits.keys():
            found = 0.0
            if phrase_id in title_hits:
                found += TITLE_WEIGHT
            if phrase_id in keyword_hits:
                found += KEYWORD_WEIGHT
            mentions = abstract_hits.get(phrase_id, 0)
            if mentions:
                found += ABSTRACT_WEIGHT + REPEAT_BONUS * min(mentions - 1, MAX_REPEATS)
                if phrase_id in claim_hits:
                    found += CLAIM_BONUS
            for topic, weight in self._weights[phrase_id].items():
                totals[topic] = totals.get(topic, 0.0) + weight * found
                if weight >= STRONG:
                    strong.add(topic)
        return {self.slugs[topic]: (total, topic in strong) for topic, total in totals.items()}

    def tag(self, title: str, abstract: str, keywords: Iterable[str] = ()) -> list[tuple[str, float]]:
        """(slug, score) for every topic at or above THRESHOLD, strongest first."""
        tags = [
            (slug, score_from_evidence(total))
            for slug, (total, has_strong) in self.evidence(title, abstract, keywords).items()
            if has_strong and score_from_evidence(total) >= THRESHOLD
        ]
        tags.sort(key=lambda tag: (-tag[1], tag[0]))
        return tags


def score_from_evidence(evidence: float) -> float:
    if evidence <= 0:
        return 0.0
    return round(1.0 - 2.0 ** (-evidence / SCALE), 4)


def _signature(topics: Iterable[Any]) -> tuple:
    signature = []
    for topic in topics:
        phrases = getattr(topic, "phrases", "") or ""
        signature.append(
            (
                topic.slug,
                getattr(topic, "name", "") or "",
                getattr(topic, "description", "") or "",
                phrases if isinstance(phrases, str) else tuple(phrases),
            )
        )
    return tuple(signature)


@lru_cache(maxsize=16)
def _compiled(signature: tuple) -> Tagger:
    return Tagger(TopicSpec(*row) for row in signature)


def get_tagger(topics: Iterable[object]) -> Tagger:
    """The compiled tagger for this topic set, built once and reused while the topics are unchanged."""
    return _compiled(_signature(topics))


def tag_text(
    title: str, abstract: str, keywords: Iterable[str], topics: Iterable[object]
) -> list[tuple[str, float]]:
    """Tag one paper: (slug, score) pairs at or above THRESHOLD, strongest first."""
    return get_tagger(topics).tag(title, abstract, keywords)


def default_topic_specs() -> list[TopicSpec]:
    """The shipped taxonomy as TopicSpecs, for scripts and tests that run without a database."""
    from digest.taxonomy import DEFAULT_TOPICS

    return [TopicSpec(t["slug"], t["name"], t["description"], tuple(t["phrases"])) for t in DEFAULT_TOPICS]
