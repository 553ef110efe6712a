"""Rank the day's papers for one set of preferences.

Pure functions over plain data, so the nightly run can rank once per group of
subscribers who share preferences, and tests can drive it without a database.

How a paper is scored for a reader:

1. Relevance, in [0, 1]. Every chosen topic and every free-text interest is
   scored on its own and the paper keeps the best:
   - a topic by the paper's tag score for it (times the reader's vote
     affinity, see `Affinity`);
   - an interest by BM25F over the title, the HF summary, the HF keywords and
     the abstract, with IDF and average field lengths from the whole archive
     (`CorpusStats`, kept by ingest). Each interest word's weight is its IDF, so
     "LLM" or "neural" weigh little and "speculative" a lot; a paper must
     match at least SHARE_GATE of the interest's total weight, so one generic
     word never passes, and words close together (in either order) earn a
     phrase bonus. An interest that names a topic ("VLA models") also brings in
     that topic's papers below its direct matches (`Ranker._bridge`).
   With a learned model (`LearnedModel`, fitted on the reader's votes and
   liked papers), relevance is (1 - LEARNED_WEIGHT) * stated + LEARNED_WEIGHT *
   the model's probability that the reader likes the paper.
2. Gate. Papers whose relevance is below `gate` are dropped.
3. Order by relevance. Upvotes only break near-ties: the score is relevance +
   trend_weight * trend, where trend is the paper's upvote percentile among the
   papers featured the same day and trend_weight is small (0.05), so a popular
   paper cannot buy a place over a clearly more relevant one. Pinned papers
   that pass the gate go first; a light diversity penalty keeps one topic
   from filling the email.
4. "Also trending": the window's most upvoted papers that the reader's list
   does not hold, at most TRENDING_LIMIT, in a separate, labelled section.

Readers may also follow arXiv categories and authors (`follow_matches`): a
paper in a followed category is a candidate worth a fixed relevance and then
ranked like any other; a paper by a followed author always makes the list,
first, with the reason "Author: <name>".

Every reason an item carries is produced by the computation that scored it.
"""

from __future__ import annotations

import heapq
import math
import re
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date

from digest.authors import AuthorIndex
from digest.sources.arxiv_categories import category_label
from digest.tagging.analysis import FIELDS, PUNCTUATION, STOPWORDS, Analyzer, CorpusStats, default_analyzer
from digest.tagging.tagger import Tagger

DEFAULT_GATE = 0.3
DEFAULT_TREND_WEIGHT = 0.05
DIVERSITY_DECAY = 0.85
# Largest change, either way, that votes can make to a topic's weight.
MAX_AFFINITY = 0.3
TRENDING_LIMIT = 3
# Relevance of a paper in a followed arXiv category: its primary one, or a cross-list.
CATEGORY_PRIMARY_RELEVANCE = 0.5
CATEGORY_RELEVANCE = 0.4

# BM25F: how much a word counts in each field, and how much each field's length normalises.
FIELD_WEIGHTS = {"title": 3.0, "summary": 1.5, "keywords": 1.0, "abstract": 1.0}
FIELD_B = {"title": 0.3, "summary": 0.5, "keywords": 0.3, "abstract": 0.75}
K1 = 1.2
# Share of an interest's IDF weight a paper must match.
SHARE_GATE = 0.6
# All of a multi-word interest's words within a short window ("selecting data" for "data selection").
TITLE_PHRASE_BONUS = 0.25
BODY_PHRASE_BONUS = 0.15
# An interest that names a topic through a specific phrase ("VLA models" names Robotics)
# also matches that topic's papers, at this fraction of their tag score: below direct matches.
BRIDGE_WEIGHT = 0.5
# ...only while fewer papers than a digest holds match the interest's own words, so an interest
# with plenty of direct matches is not padded with its whole topic.
BRIDGE_BELOW = 8
# ...and only papers where the topic (counting as the words that named it) and the paper's own
# words together carry this share of the interest's weight.
BRIDGE_SHARE = 0.5
_ALTERNATIVES = re.compile(r"\s+(?:and|or)\s+|\s*[&/]\s*", re.IGNORECASE)
# Weight of the learned model against stated topics and interests.
LEARNED_WEIGHT = 0.4
LEARNED_REASON_FLOOR = 0.6
INTEREST_CACHE_SIZE = 1024
FIELD_LABELS = {"title": "the title", "summary": "the HF summary", "keywords": "the HF keywords",
                "abstract": "the abstract"}  # fmt: skip
_FIELD_BITS = {name: 1 << index for index, name in enumerate(FIELDS)}


@dataclass(frozen=True)
class Candidate:
    """A paper as ranking reads it. `digest.papers.PaperView` is one, with what the
    email and the pages also show, so the night ranks the views it renders."""

    id: int
    title: str
    abstract: str
    keywords: tuple[str, ...]
    topic_scores: dict[str, float]
    upvotes: int
    featured_on: date | None
    pinned: bool = False
    ai_summary: str = ""
    # topic slug -> the phrases that tagged it, strongest first (empty for a curator's tag)
    topic_evidence: dict[str, tuple[str, ...]] = field(default_factory=dict)
    categories: tuple[str, ...] = ()
    authors: tuple[str, ...] = ()

    def fields(self) -> dict[str, str]:
        return {
            "title": self.title,
            "summary": self.ai_summary,
            "keywords": " | ".join(self.keywords),
            "abstract": self.abstract,
        }


def split_interests(raw: str) -> tuple[str, ...]:
    """Free-text interests are one per line, or separated by commas or semicolons."""
    parts = re.split(r"[\n,;]+", raw or "")
    return tuple(dict.fromkeys(p.strip() for p in parts if p.strip()))


@dataclass(frozen=True)
class Concept:
    """One word of an interest: the stems that count as it (a hyphenated word
    counts joined, or as all of its parts)."""

    label: str
    alternatives: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Interest:
    text: str
    concepts: tuple[Concept, ...]


def parse_interest(text: str, analyzer: Analyzer | None = None) -> Interest:
    analyzer = analyzer or default_analyzer()
    analysed = analyzer.analyse(text)
    concepts: list[Concept] = []
    seen: set[tuple[tuple[str, ...], ...]] = set()
    position = 0
    while position < len(analysed.stems):
        compound = analysed.compounds.get(position)
        if compound is not None:
            joined, length = compound
            parts = tuple(
                stem
                for stem, raw in zip(
                    analysed.stems[position : position + length],
                    analysed.raw[position : position + length],
                    strict=True,
                )
                if raw not in STOPWORDS
            )
            alternatives: tuple[tuple[str, ...], ...] = ((joined,), parts) if parts else ((joined,),)
            label = "-".join(analysed.raw[position : position + length])
            position += length
        else:
            raw, stem = analysed.raw[position], analysed.stems[position]
            position += 1
            if raw in STOPWORDS or not any(c.isalnum() for c in stem):
                continue
            alternatives, label = ((stem,),), raw
        if alternatives not in seen:
            seen.add(alternatives)
            concepts.append(Concept(label=label, alternatives=alternatives))
    return Interest(text=text, concepts=tuple(concepts))


@dataclass(frozen=True)
class InterestMatch:
    relevance: float
    reason: str


# Corpus statistics, or a function that loads them for the candidates' vocabulary.
StatsSource = CorpusStats | Callable[[set[str]], CorpusStats]


# A paper's terms per field, and (stem, word as written) from its title and abstract in order.
AnalysedPaper = tuple[dict[str, list[str]], list[tuple[str, str]]]


def analyse_paper(candidate: Candidate, analyzer: Analyzer) -> AnalysedPaper:
    per_field: dict[str, list[str]] = {}
    words: list[tuple[str, str]] = []
    for name, text in candidate.fields().items():
        if not text:
            per_field[name] = []
            continue
        analysed = analyzer.analyse(text)
        per_field[name] = [stem for stem in analysed.stems if stem not in PUNCTUATION]
        per_field[name].extend(joined for joined, _ in analysed.compounds.values())
        if name == "title" or name == "abstract":
            words.extend(zip(analysed.stems, analysed.raw, strict=True))
    return per_field, words


class InterestIndex:
    """The night's candidates as BM25F postings: term -> paper -> (field-weighted tf, fields)."""

    def __init__(
        self,
        candidates: Sequence[Candidate],
        stats: StatsSource,
        analyzer: Analyzer,
        analysed: dict[int, AnalysedPaper] | None = None,
    ):
        """`analysed` keeps each paper's terms for the next index over the same
        papers and analyser (a weekly window holds the daily one's papers)."""
        self.analyzer = analyzer
        self.postings: dict[str, dict[int, tuple[float, int]]] = defaultdict(dict)
        self.counts: dict[str, dict[int, int]] = defaultdict(dict)  # raw counts, for learned models
        self.sequences: dict[int, dict[str, list[str]]] = {}
        # stem -> a word as the papers write it, for reasons ("molecules", not "molecul")
        self.surface: dict[str, str] = {}
        self._position_cache: dict[tuple[int, str], dict[str, list[int]]] = {}
        self._concepts: dict[Concept, dict[int, tuple[float, int]]] = {}
        for candidate in candidates:
            paper = analysed.get(candidate.id) if analysed is not None else None
            if paper is None:
                paper = analyse_paper(candidate, analyzer)
                if analysed is not None:
                    analysed[candidate.id] = paper
            per_field, words = paper
            for stem, word in words:
                self.surface.setdefault(stem, word)
            self.sequences[candidate.id] = per_field
        if callable(stats):
            stats = stats(
                {term for fields in self.sequences.values() for terms in fields.values() for term in terms}
            )
        self.stats: CorpusStats = stats
        averages = {name: stats.average(name) or 1.0 for name in FIELDS}
        for paper_id, per_field in self.sequences.items():
            weighted: dict[str, float] = defaultdict(float)
            where: dict[str, int] = defaultdict(int)
            for name, terms in per_field.items():
                if not terms:
                    continue
                norm = 1 - FIELD_B[name] + FIELD_B[name] * len(terms) / averages[name]
                weight = FIELD_WEIGHTS[name] / norm
                bit = _FIELD_BITS[name]
                for term in terms:
                    weighted[term] += weight
                    where[term] |= bit
            for term, value in weighted.items():
                self.postings[term][paper_id] = (value, where[term])
            for name in ("title", "summary", "abstract"):
                for term in per_field[name]:
                    row = self.counts[term]
                    row[paper_id] = row.get(paper_id, 0) + 1

    def reset_caches(self) -> None:
        self._concepts.clear()

    def concept_idf(self, concept: Concept) -> float:
        return max(self.stats.idf(term) for alternative in concept.alternatives for term in alternative)

    def concept_postings(self, concept: Concept) -> dict[int, tuple[float, int]]:
        """Paper -> (tf, fields) for a concept: the best alternative, an alternative
        counting as present only where all of its stems are."""
        best = self._concepts.get(concept)
        if best is not None:
            return best
        best = self._concepts[concept] = {}
        for alternative in concept.alternatives:
            rows = [self.postings.get(term, {}) for term in alternative]
            for paper_id, (tf, where) in rows[0].items():
                for row in rows[1:]:
                    other = row.get(paper_id)
                    if other is None:
                        break
                    tf, where = min(tf, other[0]), where & other[1]
                else:
                    if paper_id not in best or best[paper_id][0] < tf:
                        best[paper_id] = (tf, where)
        return best

    def match(self, interest: Interest, display: str | None = None) -> dict[int, InterestMatch]:
        """Every candidate that passes the interest's share gate, with its relevance and reason."""
        concepts = interest.concepts
        if not concepts:
            return {}
        idfs = [self.concept_idf(concept) for concept in concepts]
        total = sum(idfs) or 1.0
        found = [self.concept_postings(concept) for concept in concepts]
        papers: set[int] = set()
        for rows in found:
            papers.update(rows)
        out: dict[int, InterestMatch] = {}
        for paper_id in papers:
            matched = 0.0
            base = 0.0
            hits: list[tuple[Concept, int]] = []
            for concept, idf, rows in zip(concepts, idfs, found, strict=True):
                row = rows.get(paper_id)
                if row is None:
                    continue
                tf, where = row
                matched += idf
                base += idf * tf / (tf + K1)
                hits.append((concept, where))
            if matched / total < SHARE_GATE:
                continue
            relevance = base / total
            phrase = ""
            if len(concepts) > 1 and len(hits) == len(concepts):
                phrase = self._phrase_field(paper_id, concepts)
                relevance += TITLE_PHRASE_BONUS if phrase == "title" else BODY_PHRASE_BONUS if phrase else 0.0
            out[paper_id] = InterestMatch(
                relevance=min(1.0, relevance),
                reason=_interest_reason(display or interest.text, hits, len(concepts), phrase),
            )
        return out

    def _positions(self, paper_id: int, name: str) -> dict[str, list[int]]:
        key = (paper_id, name)
        found = self._position_cache.get(key)
        if found is None:
            found = self._position_cache[key] = defaultdict(list)
            for index, term in enumerate(self.sequences[paper_id][name]):
                found[term].append(index)
        return found

    def _phrase_field(self, paper_id: int, concepts: Sequence[Concept]) -> str:
        """The first field where all the concepts stand within a short window, in any order."""
        window = len(concepts) + 1
        for name in ("title", "summary", "abstract"):
            where = self._positions(paper_id, name)
            positions: list[list[int]] = []
            for concept in concepts:
                found = sorted(
                    index for alternative in concept.alternatives for index in where.get(alternative[0], ())
                )
                if not found:
                    break
                positions.append(found)
            else:
                if _within(positions, window):
                    return name
        return ""


# A reason names the phrases that tagged the paper, strongest first: up to two, within
# this many characters, so the "Why" line of a paper stays one line on a phone.
EVIDENCE_CHARS = 30


def _evidence_shown(evidence: Sequence[str]) -> list[str]:
    shown = list(evidence[:1])
    for phrase in evidence[1:2]:
        if len(", ".join([*shown, phrase])) <= EVIDENCE_CHARS:
            shown.append(phrase)
    return shown


def _within(positions: list[list[int]], window: int) -> bool:
    """Whether one position from each list fits in `window` consecutive words."""
    events = sorted((pos, index) for index, row in enumerate(positions) for pos in row)
    latest: dict[int, int] = {}
    for pos, index in events:
        latest[index] = pos
        if len(latest) == len(positions) and pos - min(latest.values()) < window:
            return True
    return False


def _fields_text(mask: int) -> str:
    names = [FIELD_LABELS[name] for name in FIELDS if mask & _FIELD_BITS[name]]
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]


def _interest_reason(text: str, hits: list[tuple[Concept, int]], total: int, phrase: str) -> str:
    head = f'Interest "{text}": '
    if phrase:
        return head + f"as a phrase in {FIELD_LABELS[phrase]}"
    common = ~0
    union = 0
    for _, where in hits:
        common &= where
        union |= where
    where_text = _fields_text(common if common else union)
    if len(hits) == total:
        return head + f"in {where_text}"
    words = ", ".join(f'"{concept.label}"' for concept, _ in hits)
    return head + f"{words} in {where_text}"


@dataclass(frozen=True)
class LearnedModel:
    """A reader's fitted model: TF-IDF (sublinear tf, l2 norm) over `terms`, then logistic regression."""

    key: tuple
    terms: tuple[str, ...]
    idf: tuple[float, ...]
    coefficients: tuple[float, ...]
    intercept: float

    def scores(self, index: InterestIndex) -> dict[int, tuple[float, tuple[str, ...]]]:
        """Paper -> (probability the reader likes it, the words that pushed it up most)."""
        dots: dict[int, float] = defaultdict(float)
        squares: dict[int, float] = defaultdict(float)
        pushes: dict[int, list[tuple[float, str]]] = defaultdict(list)
        for term, idf, coefficient in zip(self.terms, self.idf, self.coefficients, strict=True):
            for paper_id, count in index.counts.get(term, {}).items():
                value = (1 + math.log(count)) * idf
                dots[paper_id] += value * coefficient
                squares[paper_id] += value * value
                if coefficient > 0 and term not in STOPWORDS:
                    pushes[paper_id].append((value * coefficient, term))
        out: dict[int, tuple[float, tuple[str, ...]]] = {}
        for paper_id in index.sequences:
            norm = math.sqrt(squares.get(paper_id, 0.0)) or 1.0
            logit = dots.get(paper_id, 0.0) / norm + self.intercept
            top = sorted(pushes.get(paper_id, ()), reverse=True)[:3]
            words = tuple(index.surface.get(term, term) for _, term in top)
            out[paper_id] = (1 / (1 + math.exp(-logit)), words)
        return out


@dataclass(frozen=True)
class Affinity:
    """What a reader's 👍 and 👎 votes (and liked papers) taught us.

    Per topic, a weight change: each vote adds (+1 or -1) times the voted
    paper's tag score to each of its topics; the running total t becomes
    MAX_AFFINITY * tanh(t / 3), a change of at most ±30% that grows quickly for
    the first votes and then saturates. A chosen topic's relevance is
    multiplied by (1 + change). A topic the reader did not choose but keeps
    upvoting counts as a weak interest of its own, worth tag score * change /
    MAX_AFFINITY * 0.6.

    With enough votes, also a `LearnedModel` over the papers' words.
    """

    weights: tuple[tuple[str, float], ...] = ()
    learned: LearnedModel | None = None

    @classmethod
    def from_votes(
        cls, votes: Iterable[tuple[int, dict[str, float]]], learned: LearnedModel | None = None
    ) -> Affinity:
        totals: dict[str, float] = defaultdict(float)
        for vote, topic_scores in votes:
            for slug, score in topic_scores.items():
                totals[slug] += vote * score
        weights = tuple(
            sorted(
                (slug, round(MAX_AFFINITY * math.tanh(total / 3), 3))
                for slug, total in totals.items()
                if abs(total) > 1e-9
            )
        )
        return cls(weights=weights, learned=learned)

    def as_dict(self) -> dict[str, float]:
        return dict(self.weights)

    def key(self) -> tuple:
        return (self.weights, self.learned.key if self.learned else None)


@dataclass(frozen=True)
class Preferences:
    topics: frozenset[str]
    interests: tuple[str, ...] = ()
    max_items: int = 8
    affinity: Affinity = field(default_factory=Affinity)
    also_trending: bool = True
    categories: frozenset[str] = frozenset()
    authors: tuple[str, ...] = ()

    @property
    def learned(self) -> LearnedModel | None:
        return self.affinity.learned

    def key(self) -> tuple:
        """Subscribers whose keys are equal get the same ranked list."""
        return (
            tuple(sorted(self.topics)),
            self.interests,
            self.max_items,
            self.affinity.key(),
            self.also_trending,
            *self.follows_key(),
        )

    def follows_key(self) -> tuple:
        return (tuple(sorted(self.categories)), self.authors)


@dataclass(frozen=True)
class RankedItem:
    paper_id: int
    score: float
    relevance: float
    trend: float
    reasons: tuple[str, ...]
    pinned: bool
    trending: bool = False
    # By an author the reader follows: kept even past the reader's digest size.
    followed: bool = False


@dataclass(frozen=True)
class Match:
    relevance: float
    reasons: tuple[str, ...]
    primary: str
    by_author: bool = False


def trend_percentiles(candidates: Sequence[Candidate], *, by_day: bool = True) -> dict[int, float]:
    """Upvote percentile of each paper among the papers featured the same day
    (or, with by_day=False, among all the candidates: a week's best).

    1.0 is the day's most upvoted paper, 0.0 its least; ties share the average
    rank. Papers with no featured day (arXiv-only) get 0.
    """
    by_day_papers: dict[date | None, list[Candidate]] = defaultdict(list)
    result: dict[int, float] = {}
    for candidate in candidates:
        if candidate.featured_on is None:
            result[candidate.id] = 0.0
        else:
            by_day_papers[candidate.featured_on if by_day else None].append(candidate)
    for day_papers in by_day_papers.values():
        if len(day_papers) == 1:
            result[day_papers[0].id] = 1.0
            continue
        ordered = sorted(day_papers, key=lambda c: c.upvotes)
        last = len(ordered) - 1
        i = 0
        while i <= last:
            j = i
            while j < last and ordered[j + 1].upvotes == ordered[i].upvotes:
                j += 1
            value = ((i + j) / 2) / last
            for k in range(i, j + 1):
                result[ordered[k].id] = value
            i = j + 1
    return result


class Ranker:
    """Ranks one night's candidates for many preference sets.

    Build it once per run; `rank()` is then called once per preference group.
    Topic display names turn slugs into reasons a reader understands. `stats`
    are the archive's corpus statistics (without them, the candidates' own).
    """

    def __init__(
        self,
        candidates: Sequence[Candidate],
        *,
        topic_names: dict[str, str] | None = None,
        gate: float = DEFAULT_GATE,
        trend_weight: float = DEFAULT_TREND_WEIGHT,
        stats: StatsSource | None = None,
        analyzer: Analyzer | None = None,
        tagger: Tagger | None = None,
        trend_by_day: bool = True,
        analysed: dict[int, AnalysedPaper] | None = None,
    ):
        self.candidates = list(candidates)
        self._analysed = analysed
        self.topic_names = topic_names or {}
        self.gate = gate
        self.trend_weight = trend_weight
        self.analyzer = analyzer or default_analyzer()
        self.tagger = tagger
        self._stats = stats
        self.trend = trend_percentiles(self.candidates, by_day=trend_by_day)
        self._follows: FollowIndex | None = None
        self._index: InterestIndex | None = None
        # Per interest text, bounded: a night sees thousands of distinct interests.
        self._interests: OrderedDict[str, dict[int, InterestMatch]] = OrderedDict()
        self._learned: dict[tuple, dict[int, tuple[float, tuple[str, ...]]]] = {}
        self._reasons: dict[tuple[str, int], str] = {}
        self._by_id = {candidate.id: candidate for candidate in self.candidates}
        self.paper_ids = frozenset(self._by_id)
        # Only papers carrying a tag can match a topic; index them by topic.
        self._by_topic: dict[str, list[Candidate]] = defaultdict(list)
        # ...and, for ranking by topics alone, by the topics whose tag passes the gate:
        # (paper id, tag, score if this topic is its best), so each paper's place in
        # the ranking is worked out once per night, not per reader.
        self._gated_scores: dict[str, list[tuple[int, float, float]]] = defaultdict(list)
        self._gated_tags: dict[str, dict[int, float]] = defaultdict(dict)
        for candidate in self.candidates:
            trend = self.trend.get(candidate.id, 0.0)
            for slug, tag in candidate.topic_scores.items():
                self._by_topic[slug].append(candidate)
                if tag and min(1.0, tag) >= gate:
                    capped = min(1.0, tag)
                    score = round(capped + trend_weight * trend, 6)
                    self._gated_scores[slug].append((candidate.id, capped, score))
                    self._gated_tags[slug][candidate.id] = capped
        most_upvoted = sorted(
            (c for c in self.candidates if c.featured_on is not None),
            key=lambda c: (-c.upvotes, -self.trend.get(c.id, 0.0), c.id),
        )
        self._most_upvoted = most_upvoted[:TRENDING_LIMIT]
        # Their items, made once: every reader's "Also trending" section picks from them.
        self._trending_items: list[RankedItem] | None = None

    @property
    def index(self) -> InterestIndex:
        """Built on first use: readers with topics only never need it."""
        if self._index is None:
            stats = self._stats
            if stats is None:
                stats = CorpusStats.from_documents((c.fields() for c in self.candidates), self.analyzer)
            self._index = InterestIndex(self.candidates, stats, self.analyzer, self._analysed)
        return self._index

    def reset_caches(self) -> None:
        """Forget per-interest and per-model results (the benchmark times them cold)."""
        self._interests.clear()
        self._learned.clear()
        if self._index is not None:
            self._index.reset_caches()

    def interest_matches(self, text: str) -> dict[int, InterestMatch]:
        """Papers matching a free-text interest. "X and Y" (or "X or Y", "X/Y") asks for either;
        when few papers match directly, a specific phrase naming a topic brings that topic's papers
        in below them."""
        found = self._interests.get(text)
        if found is not None:
            self._interests.move_to_end(text)
            return found
        found = {}
        parts = [part for part in _ALTERNATIVES.split(text) if part.strip()] or [text]
        parsed = [(part, parse_interest(part, self.analyzer)) for part in parts]
        for _, interest in parsed:
            for paper_id, match in self.index.match(interest, text).items():
                if paper_id not in found or found[paper_id].relevance < match.relevance:
                    found[paper_id] = match
        if self.tagger is not None and len(found) < BRIDGE_BELOW:
            self._bridge(text, parsed, found)
        # A match far below the gate can never name a reason or pass; keep the cache small.
        found = {paper_id: match for paper_id, match in found.items() if match.relevance >= self.gate / 2}
        self._interests[text] = found
        if len(self._interests) > INTEREST_CACHE_SIZE:
            self._interests.popitem(last=False)
        return found

    def _bridge(self, text: str, parsed: list[tuple[str, Interest]], found: dict[int, InterestMatch]) -> None:
        """Add the papers of the topics the interest names, at BRIDGE_WEIGHT times their tag score
        and below every direct match that passes the gate. A topic counts as matching the words
        that named it; with the words the paper itself has, they must carry BRIDGE_SHARE of the
        interest's weight ("VLM" alone is too small a part of "VLM hallucination")."""
        ceiling = min((m.relevance for m in found.values() if m.relevance >= self.gate), default=1.0)
        bridged: dict[int, tuple[float, str]] = {}  # paper -> (relevance, topic)
        for part, interest in parsed:
            weights = [self.index.concept_idf(concept) for concept in interest.concepts]
            total = sum(weights)
            if not total or self.tagger is None:
                continue
            named: dict[str, set[int]] = {}  # topic -> the concepts its phrases stand for
            for slug, _, phrases in self.tagger.specific_topics(part):
                stems = {stem for phrase in phrases for stem in self.analyzer.terms(phrase)}
                named[slug] = {
                    index
                    for index, concept in enumerate(interest.concepts)
                    if any(all(stem in stems for stem in alternative) for alternative in concept.alternatives)
                }
            if not named:
                continue
            present = [self.index.concept_postings(concept) for concept in interest.concepts]
            needed = BRIDGE_SHARE * total
            for slug, concepts in named.items():
                enough = sum(weights[i] for i in concepts) >= needed
                for paper_id, tag, _ in self._gated_scores.get(slug, ()):
                    candidate = self._by_id[paper_id]
                    if not enough:
                        covered = set(concepts)
                        for other, more in named.items():
                            if other != slug and candidate.topic_scores.get(other, 0.0) >= self.gate:
                                covered |= more
                        covered.update(i for i, rows in enumerate(present) if candidate.id in rows)
                        if sum(weights[i] for i in covered) < needed:
                            continue
                    relevance = min(BRIDGE_WEIGHT * tag, ceiling - 0.001)
                    if candidate.id not in bridged or bridged[candidate.id][0] < relevance:
                        bridged[candidate.id] = (relevance, slug)
        for paper_id, (relevance, slug) in bridged.items():
            current = found.get(paper_id)
            if current is None or current.relevance < relevance:
                reason = f'Interest "{text}": through Topic {self.topic_label(slug)}'
                found[paper_id] = InterestMatch(relevance=relevance, reason=reason)

    def learned_scores(self, model: LearnedModel) -> dict[int, tuple[float, tuple[str, ...]]]:
        found = self._learned.get(model.key)
        if found is None:
            found = self._learned[model.key] = model.scores(self.index)
        return found

    def topic_label(self, slug: str) -> str:
        return self.topic_names.get(slug, slug.replace("-", " ").capitalize())

    def _topic_reason(self, slug: str, candidate: Candidate) -> str:
        key = (slug, candidate.id)
        reason = self._reasons.get(key)
        if reason is None:
            evidence = candidate.topic_evidence.get(slug, ())
            label = f"Topic {self.topic_label(slug)}"
            reason = f"{label}: {', '.join(_evidence_shown(evidence))}" if evidence else label
            self._reasons[key] = reason
        return reason

    def _relevance(
        self,
        candidate: Candidate,
        prefs: Preferences,
        affinity: dict,
        interests: list[dict[int, InterestMatch]],
    ) -> tuple[float, str] | None:
        """The relevance and primary match that `match` gives the paper, without
        writing its reasons; None where `match` gives None. Each stated match
        scores as in `match`, the first of equal scores leads."""
        topic_scores = candidate.topic_scores
        best = 0.0
        primary = ""
        for slug in prefs.topics:
            tag = topic_scores.get(slug)
            if tag:
                score = min(1.0, tag * (1 + affinity.get(slug, 0.0)) if affinity else tag)
                if not primary or score > best:
                    best, primary = score, slug
        for slug, change in affinity.items():
            if change > 0 and slug not in prefs.topics and slug in topic_scores:
                score = topic_scores[slug] * (change / MAX_AFFINITY) * 0.6
                if not primary or score > best:
                    best, primary = score, slug
        for raw, matches in zip(prefs.interests, interests, strict=True):
            found = matches.get(candidate.id)
            if found is not None and (not primary or found.relevance > best):
                best, primary = found.relevance, f"interest:{raw}"
        relevance = best
        learned_reason = False
        if prefs.learned is not None:
            probability, words = self.learned_scores(prefs.learned).get(candidate.id, (0.0, ()))
            relevance = (1 - LEARNED_WEIGHT) * best + LEARNED_WEIGHT * probability
            learned_reason = probability >= LEARNED_REASON_FLOOR and bool(words)
        stated_reason = bool(primary) and best >= self.gate
        if relevance < self.gate or not (stated_reason or learned_reason):
            return None
        return relevance, primary if stated_reason else "learned"

    def match(
        self,
        candidate: Candidate,
        prefs: Preferences,
        affinity: dict | None = None,
        interests: list[dict[int, InterestMatch]] | None = None,
    ) -> Match | None:
        if affinity is None:
            affinity = prefs.affinity.as_dict()
        if interests is None:
            interests = [self.interest_matches(raw) for raw in prefs.interests]
        topic_scores = candidate.topic_scores
        scored: list[tuple[float, str, str]] = []  # (score, reason, primary key)
        for slug in prefs.topics:
            tag = topic_scores.get(slug)
            if tag:
                score = min(1.0, tag * (1 + affinity.get(slug, 0.0)) if affinity else tag)
                scored.append((score, self._topic_reason(slug, candidate), slug))
        for slug, change in affinity.items():
            if change > 0 and slug not in prefs.topics and slug in candidate.topic_scores:
                score = candidate.topic_scores[slug] * (change / MAX_AFFINITY) * 0.6
                scored.append((score, f"Like papers you upvoted: {self.topic_label(slug)}", slug))
        for raw, matches in zip(prefs.interests, interests, strict=True):
            found = matches.get(candidate.id)
            if found is not None:
                scored.append((found.relevance, found.reason, f"interest:{raw}"))
        scored.sort(key=lambda item: item[0], reverse=True)
        stated = scored[0][0] if scored else 0.0
        relevance = stated
        learned_reason = ""
        if prefs.learned is not None:
            probability, words = self.learned_scores(prefs.learned).get(candidate.id, (0.0, ()))
            relevance = (1 - LEARNED_WEIGHT) * stated + LEARNED_WEIGHT * probability
            if probability >= LEARNED_REASON_FLOOR and words:
                learned_reason = f"Like papers you voted up: {', '.join(words)}"
        if relevance < self.gate or not (scored or learned_reason):
            return None
        # Name every stated match that is itself strong enough, strongest first.
        reasons = [reason for score, reason, _ in scored if score >= self.gate]
        if learned_reason:
            reasons.append(learned_reason)
        if not reasons:
            return None
        primary = scored[0][2] if scored and scored[0][0] >= self.gate else "learned"
        return Match(relevance=relevance, reasons=tuple(dict.fromkeys(reasons))[:3], primary=primary)

    def _rank_by_topics(
        self, topics: frozenset[str], exclude: frozenset[int], limit: int
    ) -> list[RankedItem]:
        """`rank` for topics alone (no interests, votes or follows), most readers'
        case, from per-topic lists of the papers whose tag passes the gate: a paper
        with no such tag cannot pass, and only such tags are named as reasons. A
        paper's relevance is its best tag among the reader's topics, the first of
        them on a tie (the order `match` scores them in). Papers are ordered by
        plain tuples and only the chosen few become items with reasons, so
        thousands of distinct topic sets a night cost a few list walks each."""
        best: dict[int, tuple[float, float, str]] = {}  # paper -> (tag, score, topic)
        for slug in topics:
            for paper_id, tag, score in self._gated_scores.get(slug, ()):
                current = best.get(paper_id)
                if current is None or tag > current[0]:
                    best[paper_id] = (tag, score, slug)
        pinned: list[RankedItem] = []
        keyed: list[tuple[float, int, str, float]] = []  # (-score, paper, primary topic, relevance)
        for paper_id, (tag, score, slug) in best.items():
            if paper_id in exclude:
                continue
            if self._by_id[paper_id].pinned:
                pinned.append(self._topic_item(paper_id, tag, score, topics))
            else:
                keyed.append((-score, paper_id, slug, tag))
        pinned.sort(key=lambda item: (-item.score, item.paper_id))
        chosen = pinned[:limit]
        picks = _diversify_keyed(_best_keyed(keyed, limit), limit - len(chosen))
        return chosen + [self._topic_item(paper_id, tag, -key, topics) for key, paper_id, _, tag in picks]

    def _topic_item(
        self, paper_id: int, relevance: float, score: float, topics: frozenset[str]
    ) -> RankedItem:
        """The item for a paper matched by topics alone: every reader topic it passes
        the gate for names a reason, strongest first (stable, in the order of `topics`)."""
        candidate = self._by_id[paper_id]
        tags = [
            (self._gated_tags[slug][paper_id], slug) for slug in topics if paper_id in self._gated_tags[slug]
        ]
        if len(tags) > 1:
            tags.sort(key=lambda item: item[0], reverse=True)
        reasons = tuple(dict.fromkeys(self._topic_reason(slug, candidate) for _, slug in tags))
        return RankedItem(
            paper_id=paper_id,
            score=score,
            relevance=round(relevance, 6),
            trend=round(self.trend.get(paper_id, 0.0), 6),
            reasons=reasons[:3],
            pinned=candidate.pinned,
        )

    def _pool(self, prefs: Preferences) -> Iterable[Candidate]:
        if prefs.learned is not None:
            return self.candidates
        pool: dict[int, Candidate] = {}
        slugs = set(prefs.topics) | {slug for slug, change in prefs.affinity.weights if change > 0}
        for slug in slugs:
            for candidate in self._by_topic.get(slug, ()):
                pool.setdefault(candidate.id, candidate)
        for raw in prefs.interests:
            for paper_id in self.interest_matches(raw):
                pool.setdefault(paper_id, self._by_id[paper_id])
        return pool.values()

    def rank(
        self, prefs: Preferences, *, exclude: frozenset[int] = frozenset(), extra: int = 0
    ) -> list[RankedItem]:
        """The ranked list for one preference set.

        `extra` asks for that many items beyond max_items, so a caller can drop
        papers a particular reader has already received and still fill the list.
        """
        limit = prefs.max_items + extra
        affinity = prefs.affinity.as_dict()
        follows = follow_matches(self, prefs, exclude)
        if not (affinity or prefs.interests or prefs.learned is not None or follows):
            return self._rank_by_topics(prefs.topics, exclude, limit)
        interests = [self.interest_matches(raw) for raw in prefs.interests]
        pinned: list[RankedItem] = []
        # (-score, paper, primary, match or None, trend): ordered as tuples; reasons
        # and items are made only for the papers chosen.
        keyed: list[tuple[float, int, str, Match | None, float]] = []
        trend_weight = self.trend_weight
        pool = (candidate for candidate in self._pool(prefs) if candidate.id not in exclude)
        if follows:
            matches = with_follows(
                ((candidate, self.match(candidate, prefs, affinity, interests)) for candidate in pool),
                follows,
            )
            for candidate, found in matches:
                if found is None:
                    continue
                trend = self.trend.get(candidate.id, 0.0)
                score = round(found.relevance + trend_weight * trend, 6)
                if candidate.pinned or found.by_author:
                    pinned.append(_item(candidate, found, score, trend))
                else:
                    keyed.append((-score, candidate.id, found.primary, found, trend))
        else:
            for candidate in pool:
                relevance_and_primary = self._relevance(candidate, prefs, affinity, interests)
                if relevance_and_primary is None:
                    continue
                relevance, primary = relevance_and_primary
                trend = self.trend.get(candidate.id, 0.0)
                score = round(relevance + trend_weight * trend, 6)
                if candidate.pinned:
                    found = self.match(candidate, prefs, affinity, interests)
                    assert found is not None  # the same computation passed it
                    pinned.append(_item(candidate, found, score, trend))
                else:
                    keyed.append((-score, candidate.id, primary, None, trend))
        pinned.sort(key=lambda item: (not item.followed, -item.score, item.paper_id))
        chosen = pinned[: max(limit, sum(item.followed for item in pinned))]
        picks = _diversify_keyed(_best_keyed(keyed, limit), limit - len(chosen))
        items = []
        for key, paper_id, _, found, trend in picks:
            candidate = self._by_id[paper_id]
            if found is None:
                found = self.match(candidate, prefs, affinity, interests)
                assert found is not None
            items.append(_item(candidate, found, -key, trend))
        return chosen + items

    def also_trending(
        self, chosen: Iterable[int], *, exclude: frozenset[int] = frozenset(), limit: int = TRENDING_LIMIT
    ) -> list[RankedItem]:
        """The window's most upvoted papers that are not in the reader's list, labelled as such."""
        if self._trending_items is None:
            self._trending_items = [
                RankedItem(
                    paper_id=c.id,
                    score=0.0,
                    relevance=0.0,
                    trend=round(self.trend.get(c.id, 0.0), 6),
                    reasons=(f"Also trending: {c.upvotes} upvotes on Hugging Face",),
                    pinned=False,
                    trending=True,
                )
                for c in self._most_upvoted
            ]
        taken = set(chosen) | exclude
        return [item for item in self._trending_items if item.paper_id not in taken][:limit]


# --- Followed categories and authors -------------------------------------------------


class FollowIndex:
    """A ranker's candidates by arXiv category and by author, built on first use."""

    def __init__(self, candidates: Sequence[Candidate]):
        self.by_id = {candidate.id: candidate for candidate in candidates}
        self.by_category: dict[str, list[Candidate]] = defaultdict(list)
        for candidate in candidates:
            for category in candidate.categories:
                self.by_category[category].append(candidate)
        self.authors = AuthorIndex((candidate.id, candidate.authors) for candidate in candidates)


def follow_matches(
    ranker: Ranker, prefs: Preferences, exclude: frozenset[int]
) -> dict[int, tuple[Candidate, Match]]:
    """Papers in the reader's arXiv categories and by the authors they follow, with why.

    A category match is worth CATEGORY_PRIMARY_RELEVANCE when it is the paper's
    primary category, CATEGORY_RELEVANCE for a cross-list, and still has to pass
    the gate; an author match always qualifies."""
    if not prefs.categories and not prefs.authors:
        return {}
    if ranker._follows is None:
        ranker._follows = FollowIndex(ranker.candidates)
    index = ranker._follows
    found: dict[int, Match] = {}
    for category in sorted(prefs.categories):
        reason = f"Category: {category_label(category)}"
        for candidate in index.by_category.get(category, ()):
            if candidate.id in exclude:
                continue
            primary = candidate.categories[0] == category
            relevance = CATEGORY_PRIMARY_RELEVANCE if primary else CATEGORY_RELEVANCE
            current = found.get(candidate.id)
            if relevance < ranker.gate or (current and current.relevance >= relevance):
                continue
            found[candidate.id] = Match(relevance, (reason,), f"category:{category}")
    for followed in prefs.authors:
        for paper_id, written in index.authors.papers_by(followed).items():
            if paper_id in exclude:
                continue
            current = found.get(paper_id)
            reasons: tuple[str, ...] = (f"Author: {written}",)
            if current and current.by_author:
                continue
            if current:
                reasons += current.reasons
            found[paper_id] = Match(1.0, reasons, f"author:{followed}", by_author=True)
    return {paper_id: (index.by_id[paper_id], match) for paper_id, match in found.items()}


def with_follows(
    matches: Iterable[tuple[Candidate, Match | None]], follows: dict[int, tuple[Candidate, Match]]
) -> Iterator[tuple[Candidate, Match | None]]:
    """The ranker's matches with the reader's category and author matches folded in:
    the stronger relevance counts, an author match leads the reasons."""
    follows = dict(follows)
    for candidate, found in matches:
        _, extra = follows.pop(candidate.id, (candidate, None))
        if extra is None:
            yield candidate, found
        elif found is None:
            yield candidate, extra
        else:
            extra_leads = extra.by_author or extra.relevance > found.relevance
            lead, other = (extra, found) if extra_leads else (found, extra)
            reasons = tuple(dict.fromkeys(lead.reasons + other.reasons))[:3]
            relevance = max(found.relevance, extra.relevance)
            yield candidate, Match(relevance, reasons, lead.primary, by_author=extra.by_author)
    yield from follows.values()


def trending(ranker: Ranker, limit: int, *, exclude: frozenset[int] = frozenset()) -> list[RankedItem]:
    """The day's most upvoted papers regardless of preferences, for readers who
    asked to get an email even when nothing matched."""
    pool = [c for c in ranker.candidates if c.id not in exclude and c.featured_on is not None]
    pool.sort(key=lambda c: (-ranker.trend.get(c.id, 0.0), -c.upvotes, c.id))
    return [
        RankedItem(
            paper_id=c.id,
            score=round(ranker.trend.get(c.id, 0.0), 6),
            relevance=0.0,
            trend=round(ranker.trend.get(c.id, 0.0), 6),
            reasons=("Trending: nothing matched your interests today",),
            pinned=c.pinned,
            trending=True,
        )
        for c in pool[:limit]
    ]


def _item(candidate: Candidate, found: Match, score: float, trend: float) -> RankedItem:
    return RankedItem(
        paper_id=candidate.id,
        score=score,
        relevance=round(found.relevance, 6),
        trend=round(trend, 6),
        reasons=found.reasons,
        pinned=candidate.pinned,
        followed=found.by_author,
    )


_Keyed = tuple  # (-score, paper id, primary, ...): ordered by score, then paper id


def _best_keyed(keyed: list[_Keyed], limit: int) -> list[_Keyed]:
    """The entries diversity can choose from, best first. It only reorders near
    the top: the best four times the list length are enough. Paper ids are
    unique, so tuples never compare past them."""
    if len(keyed) > 4 * limit:
        return heapq.nsmallest(4 * limit, keyed)
    keyed.sort()
    return keyed


def _diversify_keyed(ordered: list[_Keyed], limit: int) -> list[_Keyed]:
    """Greedy pick from entries sorted best first, where each entry already
    chosen for the same primary match multiplies the next one's score by
    DIVERSITY_DECAY.

    Within one primary match every entry carries the same decay, so the best
    entry left is always the first one of some primary: each pick compares the
    heads of the primaries' queues, and a tie goes to the entry ranked first."""
    if limit <= 0:
        return []
    queues: dict[str, list[_Keyed]] = {}
    for entry in ordered:
        queues.setdefault(entry[2], []).append(entry)
    if len(queues) == 1:
        return ordered[:limit]
    # Entries taken from each queue: also how often its primary was used.
    taken = dict.fromkeys(queues, 0)
    chosen: list[_Keyed] = []
    while len(chosen) < limit:
        best: _Keyed | None = None
        best_primary = ""
        best_value = -1.0
        for primary, queue in queues.items():
            used = taken[primary]
            if used == len(queue):
                continue
            entry = queue[used]
            value = -entry[0] * (DIVERSITY_DECAY**used)
            if value > best_value or (value == best_value and best is not None and entry < best):
                best, best_primary, best_value = entry, primary, value
        if best is None:
            break
        taken[best_primary] += 1
        chosen.append(best)
    return chosen
