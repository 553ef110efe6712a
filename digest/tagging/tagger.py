"""
Lexical topic tagger: fast, explainable, editable by admins, nothing to download.

How a paper is scored against a topic
-------------------------------------
1. Title, abstract and Hugging Face ``ai_keywords`` are read by the shared text
   analyser (``digest.tagging.analysis``): accents folded, hyphenated words
   matched split and joined, Snowball stems, acronym plurals ("LLMs" = "LLM")
   and the admin's alias map ("RL" = "reinforcement learning").
2. Each topic's phrases (see ``digest.tagging.taxonomy`` for the line syntax),
   its name and the short fragments of its description are matched. Where
   phrases overlap the longest one wins, so "process reward model" counts for
   reasoning and not as "reward model" for alignment. A two-word phrase also
   matches in the other order ("data selection" = "selecting data"). Lines of
   a topic that read as the same words are one phrase with the first line's
   weight; the name and description fragments count only where no topic's own
   lines read the same words, and a one-word fragment only if it is an acronym.
3. Evidence per phrase: 2.0 for the title; 1.0 for the abstract plus 0.5 for
   each further mention (two at most); 1.0 more when it appears in a sentence
   where the paper states its contribution ("we introduce ...", "this paper
   presents ..."). Strong phrases count fully, weak ones (``~``) half,
   counter-evidence (``-``) subtracts.
4. Supporting evidence only: the HF keywords (they mostly repeat the
   abstract: 1.0 for a phrase found only there, 0.25 when the text has it
   too), and phrases found only in sentences that report how results were
   measured ("experiments on GSM8K show ...", "outperforms ... on benchmarks",
   "across models and datasets"), which count half; in a sentence that states
   the contribution, that is the part from the clause where the report begins.
   Sentences that only say where code or data is available are ignored.
5. The topic's score is ``1 - 2 ** (-evidence / 2)``, in [0, 1). A topic is
   tagged when the score reaches THRESHOLD (0.5, that is evidence 2.0) and a
   strong phrase matched in the title or the text, or when supporting
   evidence alone is plentiful (WEAK_ONLY_EVIDENCE), so many weak mentions
   can tag but one generic word never does.

A compiled ``Tagger`` is cached per topic set and alias map, so tagging is a
few dictionary lookups per word: well over a thousand papers a second.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from digest.tagging.analysis import PUNCTUATION, Analyzer, default_analyzer, fold

THRESHOLD = 0.5
TITLE_WEIGHT = 2.0
KEYWORD_WEIGHT = 1.0
KEYWORD_REPEAT_WEIGHT = 0.25
ABSTRACT_WEIGHT = 1.0
REPEAT_BONUS = 0.5
MAX_REPEATS = 2
CLAIM_BONUS = 1.0
MEASUREMENT_FACTOR = 0.5
STRONG = 1.0
WEAK = 0.5
COUNTER = -1.0
SCALE = 2.0  # evidence at which the score reaches one half
# Supporting evidence alone tags at this much (e.g. three weak phrases in the
# title and contribution sentence), never from one word.
WEAK_ONLY_EVIDENCE = 3.0

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
# Words allowed between the two words of a phrase read in the other order ("selection of data").
_GAP_WORDS = frozenset({"of", "for", "the", "a", "an", "in", "on", "to"})

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
# Sentences that say how results were measured, not what the paper is about.
_MEASUREMENT = re.compile(
    r"\b(?:experiments?|evaluations?|results|empirical(?:ly)?|extensive|benchmarks?|leaderboards?|"
    r"judge[sd]?|tested|evaluated)\b[^.]*\b(?:show|shows|demonstrat\w*|outperform\w*|achiev\w*|"
    r"surpass\w*|improv\w*|gains?|confirm\w*|reveal\w*|across|on|state-of-the-art|sota)\b"
    r"|\b(?:outperform\w*|surpass\w*|state-of-the-art|sota|achiev\w*\s+(?:[\w-]+\s+){0,3}"
    r"(?:state|results|performance|scores?|gains?|accuracy))\b"
    r"|\b(?:across|on|over)\s+(?:(?!how\b|to\b|what\b|which\b|that\b)[\w-]+,?\s+){0,5}"
    r"(?:benchmarks|datasets|leaderboards|suites|model families)\b",
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


def split_abstract(abstract: str) -> tuple[list[str], list[str], list[str]]:
    """The abstract as (what it describes, the part of that where it states its contribution,
    what only reports how results were measured).

    A sentence that states the contribution keeps that role except for its clauses that
    report measurements ("we introduce X, validated on language modelling benchmarks").
    """
    described: list[str] = []
    claims: list[str] = []
    measured: list[str] = []
    for sentence in _SENTENCE_END.split(abstract):
        if not _MEASUREMENT.search(sentence):
            described.append(sentence)
            if _CLAIM.search(sentence):
                claims.append(sentence)
        elif not _CLAIM.search(sentence):
            measured.append(sentence)
        else:
            # From the clause where the measurement begins to the end of the sentence.
            start = _claim_part_end(sentence)
            described.append(sentence[:start])
            claims.append(sentence[:start])
            measured.append(sentence[start:])
    return described, claims, measured


def _claim_part_end(sentence: str) -> int:
    claim = _CLAIM.search(sentence)
    claim_end = claim.end() if claim else 0
    for found in _MEASUREMENT.finditer(sentence):
        if found.start() >= claim_end:
            cut = max(sentence.rfind(mark, claim_end, found.start() + 1) for mark in ",;:")
            return cut + 1 if cut >= 0 else found.start()
    return len(sentence)


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


def _phrase_lines(phrases: str | Sequence[str]) -> list[str]:
    if isinstance(phrases, str):
        return phrases.splitlines()
    return list(phrases)


def _derived_phrases(name: str, description: str, analyzer: Analyzer) -> list[tuple[str, float]]:
    """The name as a strong phrase and short description fragments as weak ones. A one-word
    fragment is left out unless it is an acronym: it is often a modifier that lost its head
    word ("data curation and selection") or a word shared with other fields ("control")."""
    derived: list[tuple[str, float]] = []
    generic = {analyzer.stem(word) for word in GENERIC_WORDS}
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
        if len(words) == 1 and analyzer.stem(words[0].replace("-", "")) in generic:
            continue
        if len(words) == 1 and weight < STRONG and not (text.isupper() and len(text) > 1):
            continue
        derived.append((text, weight))
    return derived


class Tagger:
    """Topic phrases compiled into a first-word index; build once per topic set and alias map."""

    def __init__(self, topics: Iterable[Any], analyzer: Analyzer | None = None):
        self.analyzer = analyzer or default_analyzer()
        self.slugs: list[str] = []
        self._key_ids: dict[tuple[str, ...], int] = {}
        self._weights: list[dict[int, float]] = []
        self._prefixes: list[tuple[str, int]] = []
        self._suffixes: list[tuple[str, int]] = []
        self._wild_cache: dict[str, int] = {}
        self._labels: list[str] = []  # phrase id -> the phrase as written, for reasons
        topics = list(topics)
        for index, topic in enumerate(topics):
            self.slugs.append(topic.slug)
            for line in _phrase_lines(getattr(topic, "phrases", "") or ""):
                parsed = _parse_phrase_line(line)
                if parsed:
                    self._add(parsed[0], index, parsed[1])
        # The name and description fragments only where no topic's own lines read the same
        # words: "agents" in the description of RL is the Agents topic's word, not RL's.
        explicit = set(self._key_ids)
        for index, topic in enumerate(topics):
            for text, weight in _derived_phrases(
                getattr(topic, "name", ""), getattr(topic, "description", ""), self.analyzer
            ):
                keys = self.analyzer.phrase_keys(text)
                if explicit.intersection(keys) or any(
                    len(key) == 1 and self._wildcard(key[0]) >= 0 for key in keys
                ):
                    continue
                self._add(text, index, weight)
        # Two-word phrases also match the other way round ("selecting data" for "data selection").
        for key, phrase_id in list(self._key_ids.items()):
            if len(key) == 2 and key[0] != key[1]:
                self._key_ids.setdefault((key[1], key[0]), phrase_id)

        # first stem -> candidate keys, longest first
        self._index: dict[str, list[tuple[int, list[str], int]]] = {}
        for key, phrase_id in self._key_ids.items():
            self._index.setdefault(key[0], []).append((len(key), list(key), phrase_id))
        for candidates in self._index.values():
            candidates.sort(key=lambda candidate: -candidate[0])
        self._reversed = {
            (key[1], key[0]): phrase_id for key, phrase_id in self._key_ids.items() if len(key) == 2
        }

    def _new_id(self, label: str = "") -> int:
        self._weights.append({})
        self._labels.append(label)
        return len(self._weights) - 1

    def _add(self, text: str, topic: int, weight: float) -> None:
        if text.startswith("*") or text.endswith("*"):
            pattern = fold(text.strip("*")).lower().replace("-", "")
            if len(pattern) >= 3 and re.fullmatch(r"[a-z0-9]+", pattern):
                phrase_id = self._new_id(text)
                self._weights[phrase_id][topic] = weight
                (self._suffixes if text.startswith("*") else self._prefixes).append((pattern, phrase_id))
            return
        keys = self.analyzer.phrase_keys(text)
        if not keys:
            return
        known = next((self._key_ids[key] for key in keys if key in self._key_ids), None)
        phrase_id = self._new_id(text) if known is None else known
        for key in keys:
            self._key_ids.setdefault(key, phrase_id)
        # Lines that read as the same words ("coding" and "~code", "embodiment" and "~embodied")
        # are one phrase to the analyser: the topic's first such line decides its weight.
        self._weights[phrase_id].setdefault(topic, weight)

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
        tokens = self.analyzer.analyse(text)
        stems, compounds, raw = tokens.stems, tokens.compounds, tokens.raw
        index = self._index
        reversed_pairs = self._reversed
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
                joined = self._key_ids.get((compound[0],))
                if joined is not None:
                    best_length, best_id = compound[1], joined
                elif wildcards and (found := self._wildcard(compound[0])) >= 0:
                    best_length, best_id = compound[1], found
            if best_length < 2 and position + 2 < end and stems[position + 1] in _GAP_WORDS:
                # "selection of data" for "data selection"
                gapped = reversed_pairs.get((stems[position + 2], stems[position]))
                if gapped is not None:
                    best_length, best_id = 3, gapped
            if best_id < 0 and wildcards and raw[position] not in PUNCTUATION:
                found = self._wildcard(raw[position])
                if found >= 0:
                    best_length, best_id = 1, found
            if best_id >= 0:
                hits[best_id] = hits.get(best_id, 0) + 1
                position += best_length
            else:
                position += 1
        return hits

    def phrase_evidence(
        self, title: str, abstract: str, keywords: Iterable[str] = ()
    ) -> dict[int, tuple[float, bool]]:
        """Phrase id -> (evidence before the phrase's weight, whether it counts as main evidence)."""
        title_hits = self._scan(title or "")
        keyword_hits = self._scan(" | ".join(keywords or ()))
        abstract = strip_boilerplate(abstract or "")
        described, claims, measured = split_abstract(abstract)
        abstract_hits = self._scan(" ".join(described))
        measured_hits = self._scan(" ".join(measured)) if measured else {}
        # Phrases in the sentences where a paper states its own contribution
        # ("we introduce ...", "this paper ...") say more than passing mentions.
        claim_hits = self._scan(" ".join(claims)) if claims else {}
        found: dict[int, tuple[float, bool]] = {}
        for phrase_id in (
            title_hits.keys() | keyword_hits.keys() | abstract_hits.keys() | measured_hits.keys()
        ):
            evidence = 0.0
            main = False
            if phrase_id in title_hits:
                evidence += TITLE_WEIGHT
                main = True
            mentions = abstract_hits.get(phrase_id, 0)
            if mentions:
                evidence += ABSTRACT_WEIGHT + REPEAT_BONUS * min(mentions - 1, MAX_REPEATS)
                main = True
                if phrase_id in claim_hits:
                    evidence += CLAIM_BONUS
            elif phrase_id in measured_hits:
                measured_mentions = measured_hits[phrase_id]
                evidence += MEASUREMENT_FACTOR * (
                    ABSTRACT_WEIGHT + REPEAT_BONUS * min(measured_mentions - 1, 1)
                )
            if phrase_id in keyword_hits:
                evidence += KEYWORD_REPEAT_WEIGHT if (main or phrase_id in measured_hits) else KEYWORD_WEIGHT
            found[phrase_id] = (evidence, main)
        return found

    def evidence(
        self, title: str, abstract: str, keywords: Iterable[str] = ()
    ) -> dict[str, tuple[float, bool]]:
        """Slug -> (evidence, whether a strong phrase matched as main evidence), for topics with any match."""
        return {
            slug: (total, strong)
            for slug, (total, strong, _) in self._explained(title, abstract, keywords).items()
        }

    def _explained(
        self, title: str, abstract: str, keywords: Iterable[str]
    ) -> dict[str, tuple[float, bool, tuple[str, ...]]]:
        totals: dict[int, float] = {}
        strong: set[int] = set()
        contributions: dict[int, list[tuple[float, str]]] = {}
        for phrase_id, (found, main) in self.phrase_evidence(title, abstract, keywords).items():
            for topic, weight in self._weights[phrase_id].items():
                totals[topic] = totals.get(topic, 0.0) + weight * found
                if weight >= STRONG and main:
                    strong.add(topic)
                if weight > 0 and main:
                    contributions.setdefault(topic, []).append((weight * found, self._labels[phrase_id]))
        out = {}
        for topic, total in totals.items():
            ranked = sorted(contributions.get(topic, ()), key=lambda item: (-item[0], item[1]))
            out[self.slugs[topic]] = (total, topic in strong, tuple(label.strip("*~") for _, label in ranked))
        return out

    def tag_with_evidence(
        self, title: str, abstract: str, keywords: Iterable[str] = ()
    ) -> list[tuple[str, float, tuple[str, ...]]]:
        """(slug, score, the phrases that earned it, strongest first) for each topic at or above THRESHOLD."""
        tags = [
            (slug, score_from_evidence(total), phrases)
            for slug, (total, has_strong, phrases) in self._explained(title, abstract, keywords).items()
            if (has_strong or total >= WEAK_ONLY_EVIDENCE) and score_from_evidence(total) >= THRESHOLD
        ]
        tags.sort(key=lambda tag: (-tag[1], tag[0]))
        return tags

    def tag(self, title: str, abstract: str, keywords: Iterable[str] = ()) -> list[tuple[str, float]]:
        """(slug, score) for every topic at or above THRESHOLD, strongest first."""
        return [(slug, score) for slug, score, _ in self.tag_with_evidence(title, abstract, keywords)]

    def specific_topics(self, text: str) -> list[tuple[str, float, tuple[str, ...]]]:
        """Topics a short text (a reader's interest) names through a specific phrase: an acronym or
        a phrase of several words, never one common word ("VLA" names robotics, "weather" names nothing).
        (slug, score, the phrases that named it)."""
        found = []
        for slug, score, phrases in self.tag_with_evidence(text, "", ()):
            if any(" " in label or "-" in label or (label.isupper() and len(label) > 1) for label in phrases):
                found.append((slug, score, phrases))
        return found


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
def _compiled(signature: tuple, analyzer: Analyzer) -> Tagger:
    return Tagger((TopicSpec(*row) for row in signature), analyzer)


def get_tagger(topics: Iterable[object], analyzer: Analyzer | None = None) -> Tagger:
    """The compiled tagger for this topic set, reused while the topics and the aliases are unchanged."""
    return _compiled(_signature(topics), analyzer or default_analyzer())


def tag_text(
    title: str, abstract: str, keywords: Iterable[str], topics: Iterable[object]
) -> list[tuple[str, float]]:
    """Tag one paper: (slug, score) pairs at or above THRESHOLD, strongest first."""
    return get_tagger(topics).tag(title, abstract, keywords)


def default_topic_specs() -> list[TopicSpec]:
    """The shipped taxonomy as TopicSpecs, for scripts and tests that run without a database."""
    from digest.tagging.taxonomy import DEFAULT_TOPICS

    return [TopicSpec(t["slug"], t["name"], t["description"], tuple(t["phrases"])) for t in DEFAULT_TOPICS]
